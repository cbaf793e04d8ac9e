//! The scratch settings written into `postgresql.conf` and `pg_hba.conf`.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::cluster::SUPERUSER;
use crate::error::{ScratchError, io_error};

/// Roles made by [`ScratchCluster::create_login_role`] are members of this group, which
/// `pg_hba.conf` sends through `scram-sha-256` on TCP; every other role is trusted.
///
/// [`ScratchCluster::create_login_role`]: crate::ScratchCluster::create_login_role
pub const PASSWORD_GROUP: &str = "scratch_password_users";

pub(crate) fn write_settings(
    data_dir: &Path,
    socket_dir: &Path,
    tls: bool,
    preload: &[&str],
) -> Result<(), ScratchError> {
    if let Some(bad) = preload.iter().find(|name| {
        name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }) {
        return Err(ScratchError::Io {
            what: "shared_preload_libraries".into(),
            source: std::io::Error::other(format!("{bad:?} is not a library name")),
        });
    }
    let quote = |path: &Path| path.display().to_string().replace('\'', "''");
    let mut settings = format!(
        "\n# migrate-scratch\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         fsync = off\n\
         full_page_writes = off\n\
         synchronous_commit = off\n\
         shared_buffers = 32MB\n\
         max_connections = 200\n\
         wal_level = replica\n\
         max_wal_senders = 10\n",
        quote(socket_dir)
    );
    if !preload.is_empty() {
        settings.push_str(&format!(
            "shared_preload_libraries = '{}'\n",
            preload.join(",")
        ));
    }
    if tls {
        settings.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    }
    let config = data_dir.join("postgresql.conf");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .map_err(io_error(format!("opening {}", config.display())))?;
    file.write_all(settings.as_bytes())
        .map_err(io_error(format!("writing {}", config.display())))?;

    // pg_hba.conf is read top down, first match wins
    // (https://www.postgresql.org/docs/15/auth-pg-hba-conf.html): password roles first.
    let hba = data_dir.join("pg_hba.conf");
    let existing =
        fs::read_to_string(&hba).map_err(io_error(format!("reading {}", hba.display())))?;
    let rules = format!(
        "host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256\n\
         host all +{PASSWORD_GROUP} ::1/128 scram-sha-256\n{existing}"
    );
    fs::write(&hba, rules).map_err(io_error(format!("writing {}", hba.display())))?;
    Ok(())
}

/// Settings appended to a standby's copy of the primary's `postgresql.conf` (the last
/// occurrence of a setting wins).
pub(crate) fn write_replica_settings(
    data_dir: &Path,
    socket_dir: &Path,
    name: &str,
    (primary_host, primary_port): (&str, u16),
) -> Result<(), ScratchError> {
    let quote = |text: &str| text.replace('\'', "''");
    // wal_receiver_status_interval: the standby reports its write/flush/replay positions at
    // least this often, so the primary's pg_stat_replication lag columns follow within a
    // second instead of the default 10 s
    // (https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-WAL-RECEIVER-STATUS-INTERVAL).
    let settings = format!(
        "\n# migrate-scratch replica\n\
         unix_socket_directories = '{}'\n\
         cluster_name = '{}'\n\
         hot_standby = on\n\
         wal_receiver_status_interval = 1s\n",
        quote(&socket_dir.display().to_string()),
        quote(name)
    );
    let config = data_dir.join("postgresql.conf");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .map_err(io_error(format!("opening {}", config.display())))?;
    file.write_all(settings.as_bytes())
        .map_err(io_error(format!("writing {}", config.display())))?;

    // `pg_basebackup -R` writes every connection option its own libpq knows into
    // primary_conninfo; a standby of an older major (one of the cache folder's, whose
    // client programs are 18's) rejects those its libpq lacks (`sslnegotiation` is 17+,
    // `sslcertmode` 16+) and never connects. The connection needs only these, and the
    // later line of postgresql.auto.conf wins.
    let conninfo = format!("host={primary_host} port={primary_port} user={SUPERUSER}");
    let auto_config = data_dir.join("postgresql.auto.conf");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&auto_config)
        .map_err(io_error(format!("opening {}", auto_config.display())))?;
    file.write_all(format!("primary_conninfo = '{}'\n", quote(&conninfo)).as_bytes())
        .map_err(io_error(format!("writing {}", auto_config.display())))
}
