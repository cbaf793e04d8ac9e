//! Certificates of a TLS-enabled cluster: [`TlsFiles`].

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{ScratchError, io_error};
use crate::process::Launcher;

/// Files of a TLS-enabled cluster.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM of the CA that signed the server certificate: the client's `sslrootcert`.
    pub ca_cert: PathBuf,
    /// The server certificate is valid for these names (`localhost`, `127.0.0.1`).
    pub server_names: Vec<String>,
}

pub(crate) fn write_certificates(
    root: &Path,
    data_dir: &Path,
    launcher: &Launcher,
) -> Result<TlsFiles, ScratchError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "migrate-scratch CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let mut server_params = CertificateParams::new(server_names.clone())?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let ca_path = root.join("ca.crt");
    fs::write(&ca_path, ca_cert.pem()).map_err(io_error("writing ca.crt"))?;
    let cert_path = data_dir.join("server.crt");
    let key_path = data_dir.join("server.key");
    fs::write(&cert_path, server_cert.pem()).map_err(io_error("writing server.crt"))?;
    fs::write(&key_path, server_key.serialize_pem()).map_err(io_error("writing server.key"))?;
    // The server refuses a key readable by group or others, or not owned by its own user
    // (https://www.postgresql.org/docs/15/ssl-tcp.html#SSL-SETUP).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))
        .map_err(io_error("chmod server.key"))?;
    if let Some(run_as) = &launcher.run_as {
        run_as.chown(&cert_path)?;
        run_as.chown(&key_path)?;
    }
    Ok(TlsFiles {
        ca_cert: ca_path,
        server_names,
    })
}
