//! A byte order mark, CRLF line endings and a symlinked file embed like any other file: the
//! link is followed, the CRLF file keeps its down part and the checksum of its LF checkout.

static MIGRATIONS: migrate_core::Migrations =
    migrate_macros::migrations!("ui/pass/bom_crlf_symlink");

fn main() {
    assert_eq!(MIGRATIONS.len(), 3);
    let crlf = MIGRATIONS.get(2).unwrap();
    assert_eq!(crlf.down.as_ref().unwrap().statements.len(), 1);
    let lf = b"-- migrate:up\nCREATE TABLE IF NOT EXISTS crlf_t (id bigint PRIMARY KEY);\n-- migrate:down\nDROP TABLE IF EXISTS crlf_t;\n";
    assert_eq!(crlf.checksum, migrate_core::Checksum::of_file(lf));
    let linked = MIGRATIONS.get(3).unwrap();
    assert!(linked.up.statements[0].sql.contains("linked_t"));
}
