//! TLS on both legs, in front of a database that refuses plain
//! connections (issue "In front of a managed production database",
//! acceptance 1 and 2). Every certificate is made by the test (rcgen);
//! the cluster runs with `ssl = on` and `hostssl`-only `pg_hba.conf`, as
//! RDS with `rds.force_ssl`, Cloud SQL or Azure do.

#[path = "../harness/mod.rs"]
mod harness;

mod clients;
mod reload;
mod store;
mod upstream;

use harness::certs::{Issued, TestCa};
use harness::{Pg, Proxy};
use std::path::{Path, PathBuf};

/// The names every test certificate is made out for.
pub const LOCAL_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// One test's certificates on disk: a CA, the proxy's certificate it
/// issued, and a second, unrelated CA.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub ca_path: PathBuf,
    pub other_ca_path: PathBuf,
    pub proxy_cert: PathBuf,
    pub proxy_key: PathBuf,
}

impl Certs {
    pub fn make() -> Certs {
        let dir = tempfile::tempdir().expect("cert dir");
        let ca = TestCa::new("pgshadow test CA");
        let ca_path = ca.write(dir.path(), "ca.crt");
        let other_ca_path = TestCa::new("someone else's CA").write(dir.path(), "other-ca.crt");
        let (proxy_cert, proxy_key) = ca.issue(LOCAL_NAMES).write(dir.path(), "proxy");
        Certs {
            dir,
            ca,
            ca_path,
            other_ca_path,
            proxy_cert,
            proxy_key,
        }
    }

    /// A server certificate for the cluster, from the same CA.
    pub fn server(&self) -> Issued {
        self.ca.issue(LOCAL_NAMES)
    }

    /// `[listen]` with the proxy's certificate and `mode`.
    pub fn listen(&self, mode: &str) -> String {
        format!(
            "[listen]\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_mode = \"{mode}\"\n",
            self.proxy_cert.display(),
            self.proxy_key.display()
        )
    }

    /// `[upstream]` verifying the server against `ca` with `mode`.
    pub fn upstream(&self, mode: &str, ca: &Path) -> String {
        format!(
            "[upstream]\ntls = \"{mode}\"\ntls_root_cert = \"{}\"\n",
            ca.display()
        )
    }
}

/// A libpq connection string to the proxy with these TLS settings.
pub fn conninfo(proxy: &Proxy, user: &str, tls: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} dbname={} connect_timeout=10 {tls}",
        proxy.port,
        harness::DB
    )
}

/// Starts the ssl-only cluster of `certs` with the shared migration.
pub fn tls_only_cluster(certs: &Certs) -> Pg {
    let pg = Pg::start_tls_only(&certs.server());
    pg.sql(harness::items::SCHEMA);
    pg
}
