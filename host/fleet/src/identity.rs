//! Fleet identity: a fleet CA, and host and client certificates it signs.
//!
//! Every certificate names one identity in its subject alternative names:
//! `<name>.host.edgehost` for a host, `<name>.client.edgehost` for an
//! operator (the role was called "client" before viewers existed; the name
//! on the certificate stays, so older certificates keep their meaning), and
//! `<name>.viewer.edgehost` for a read-only viewer. What each role may ask is
//! the table in [`edgehost_proto::RequestKind::allowed`].
//! Host certificates also carry `host.edgehost`, the name every connection to
//! a host verifies, so a host can be dialled by address before its name is
//! known; the name is read from the certificate after the handshake. Hosts
//! may act as TLS server and client (they dial each other); clients only as
//! client, so a client certificate can never pose as a host.
//!
//! Chains are one certificate deep under the CA, with P-256 keys, so the
//! whole handshake fits the first flight and stays one round trip.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use edgehost_proto::HostName;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The name every host certificate is valid for.
pub const HOST_SERVER_NAME: &str = "host.edgehost";

pub use edgehost_proto::Role;

/// The suffix of the certificate name that carries `role`.
fn suffix(role: Role) -> &'static str {
    match role {
        Role::Host => ".host.edgehost",
        Role::Operator => ".client.edgehost",
        Role::Viewer => ".viewer.edgehost",
    }
}

/// Who is on the other end of a connection, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// Host or client.
    pub role: Role,
    /// The name the certificate was issued to. Every role's names follow
    /// the host naming rule, so it is kept as a [`HostName`]; for a host it
    /// is the host's name.
    pub name: HostName,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.role, self.name)
    }
}

/// Checks that `name` can be an identity: 1-63 of `a-z`, `0-9`, `-`, not
/// starting or ending with `-` (it becomes a DNS label).
pub fn check_name(name: &str) -> Result<()> {
    edgehost_proto::check_name("identity", name).map_err(|e| Error::Identity(e.to_string()))
}

/// Reads the identity out of a fleet certificate. Fails for a certificate
/// that names no identity, or more than one.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<Identity> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| Error::Identity(format!("unreadable certificate: {e}")))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| Error::Identity(format!("unreadable certificate names: {e}")))?
        .ok_or_else(|| Error::Identity("certificate names no edgehost identity".into()))?;
    let mut found = None;
    for name in &san.value.general_names {
        let GeneralName::DNSName(dns) = name else {
            continue;
        };
        for role in [Role::Host, Role::Operator, Role::Viewer] {
            if let Some(n) = dns.strip_suffix(suffix(role)) {
                if found.is_some() {
                    return Err(Error::Identity("certificate names two identities".into()));
                }
                let name = HostName::new(n)
                    .map_err(|e| Error::Identity(format!("certificate name: {e}")))?;
                found = Some(Identity { role, name });
            }
        }
    }
    found.ok_or_else(|| Error::Identity("certificate names no edgehost identity".into()))
}

/// The identity in the first certificate of the PEM file `path`.
pub fn read_identity(path: &Path) -> Result<Identity> {
    let cert = CertificateDer::from_pem_file(path)
        .map_err(|e| Error::Identity(format!("{}: {e}", path.display())))?;
    identity_of(&cert)
}

/// A certificate chain and its private key, as loaded from PEM files.
pub struct Credentials {
    /// The holder's certificate (the fleet CA is not included).
    pub chain: Vec<CertificateDer<'static>>,
    /// The holder's private key.
    pub key: PrivateKeyDer<'static>,
    /// The fleet CA every peer must chain to.
    pub ca: CertificateDer<'static>,
    /// Who the certificate says we are.
    pub identity: Identity,
}

impl Credentials {
    /// Loads a certificate, its key and the fleet CA from PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self> {
        let ca_der = CertificateDer::from_pem_file(ca)
            .map_err(|e| Error::Identity(format!("{}: {e}", ca.display())))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| Error::Identity(format!("{}: {e}", cert.display())))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Identity(format!("{}: {e}", cert.display())))?;
        let leaf = chain
            .first()
            .ok_or_else(|| Error::Identity(format!("{}: no certificate", cert.display())))?;
        let identity = identity_of(leaf)?;
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::Identity(format!("{}: {e}", key.display())))?;
        Ok(Credentials {
            chain,
            key: key_der,
            ca: ca_der,
            identity,
        })
    }
}

/// Paths of the files `issue` writes for `name` in `dir`.
pub fn credential_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// Creates a new fleet CA in `dir` (`ca.pem`, `ca.key`). Refuses to
/// overwrite an existing one.
pub fn init_fleet(dir: &Path, fleet_name: &str) -> Result<()> {
    let ca_pem = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    if ca_pem.exists() || ca_key.exists() {
        return Err(Error::Identity(format!(
            "{} already holds a fleet CA; refusing to overwrite it",
            dir.display()
        )));
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("edgehost fleet CA {fleet_name}"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).map_err(tls_err)?;
    write_private(&ca_key, key.serialize_pem().as_bytes())?;
    write_file(&ca_pem, cert.pem().as_bytes())?;
    Ok(())
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first instant it is valid.
    pub not_before: SystemTime,
    /// The last instant it is valid; after it, every handshake with it fails.
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (a little clock skew between machines) to `days`
    /// days from now.
    pub fn days(days: u32) -> Self {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        }
    }

    /// The default lifetime for `role`: 90 days for a host, 30 for an
    /// operator or viewer, whose certificate lives on a laptop that can be
    /// lost.
    pub fn default_for(role: Role) -> Self {
        match role {
            Role::Host => Validity::days(90),
            Role::Operator | Role::Viewer => Validity::days(30),
        }
    }
}

fn datetime(t: SystemTime) -> Result<time::OffsetDateTime> {
    let secs = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| Error::Identity(format!("certificate validity: {e}")))
}

/// Issues a certificate for `name` with `role`, valid for the role's
/// default lifetime ([`Validity::default_for`]), signed by the CA in
/// `ca_dir`, and writes `<name>.pem` and `<name>.key` into `out_dir`.
pub fn issue(ca_dir: &Path, out_dir: &Path, name: &str, role: Role) -> Result<(PathBuf, PathBuf)> {
    issue_for(ca_dir, out_dir, name, role, Validity::default_for(role))
}

/// [`issue`] with an explicit validity.
pub fn issue_for(
    ca_dir: &Path,
    out_dir: &Path,
    name: &str,
    role: Role,
    validity: Validity,
) -> Result<(PathBuf, PathBuf)> {
    let issued = issue_pem(ca_dir, name, role, validity)?;
    fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let (cert_path, key_path) = credential_paths(out_dir, name);
    write_private(&key_path, issued.key_pem.as_bytes())?;
    write_file(&cert_path, issued.cert_pem.as_bytes())?;
    Ok((cert_path, key_path))
}

/// A certificate and key just issued, as PEM.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// Its serial number, as DER content bytes.
    pub serial: Vec<u8>,
}

/// The file in a CA directory that records every serial the CA issued, one
/// `<serial-hex> <role> <name>` line each: a CRL revokes serials, and this
/// is how revoking a name finds all of them.
pub const ISSUED_FILE: &str = "issued.txt";

/// Issues a certificate for `name` with `role` and `validity`, signed by the
/// CA in `ca_dir`, records its serial there ([`ISSUED_FILE`]) and returns it
/// without writing it anywhere else.
pub fn issue_pem(ca_dir: &Path, name: &str, role: Role, validity: Validity) -> Result<Issued> {
    check_name(name)?;
    if validity.not_after <= validity.not_before {
        return Err(Error::Identity(
            "a certificate must end after it begins".into(),
        ));
    }
    let issuer_pem = fs::read_to_string(ca_dir.join("ca.pem"))
        .map_err(|e| Error::io(ca_dir.join("ca.pem"), e))?;
    let issuer = ca_issuer(ca_dir, &issuer_pem)?;

    let mut names = vec![format!("{name}{}", suffix(role))];
    if role == Role::Host {
        names.push(HOST_SERVER_NAME.to_owned());
    }
    let mut params = CertificateParams::new(names).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = datetime(validity.not_before)?;
    params.not_after = datetime(validity.not_after)?;
    params.extended_key_usages = match role {
        Role::Host => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Operator | Role::Viewer => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    let key = KeyPair::generate().map_err(tls_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
    let serial = serial_of(cert.der())?;
    record_issued(ca_dir, &serial, role, name)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial,
    })
}

/// The CA of `ca_dir` as a signer.
pub(crate) fn ca_issuer(ca_dir: &Path, ca_pem: &str) -> Result<Issuer<'static, KeyPair>> {
    let ca_key_pem = fs::read_to_string(ca_dir.join("ca.key"))
        .map_err(|e| Error::io(ca_dir.join("ca.key"), e))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(tls_err)?;
    Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(tls_err)
}

/// The serial number of a certificate, as DER content bytes without
/// leading zero bytes (so a CRL entry and a certificate compare equal).
pub fn serial_of(cert: &[u8]) -> Result<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| Error::Identity(format!("unreadable certificate: {e}")))?;
    Ok(normal_serial(parsed.raw_serial()))
}

/// `serial` without leading zero bytes.
pub(crate) fn normal_serial(serial: &[u8]) -> Vec<u8> {
    let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    serial[start..].to_vec()
}

fn record_issued(ca_dir: &Path, serial: &[u8], role: Role, name: &str) -> Result<()> {
    use std::io::Write;
    let path = ca_dir.join(ISSUED_FILE);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // One write per line: appends of a few dozen bytes do not interleave.
    let line = format!("{} {role} {name}\n", hex(serial));
    f.write_all(line.as_bytes())
        .map_err(|e| Error::io(&path, e))?;
    f.sync_all().map_err(|e| Error::io(&path, e))
}

/// The serials the CA in `ca_dir` recorded for `name`, any role.
pub fn issued_serials(ca_dir: &Path, name: &str) -> Result<Vec<Vec<u8>>> {
    let path = ca_dir.join(ISSUED_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut serials = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(serial), Some(_role), Some(holder)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if holder == name {
            let bytes = unhex(serial).ok_or_else(|| {
                Error::Identity(format!("{}: bad serial {serial:?}", path.display()))
            })?;
            serials.push(bytes);
        }
    }
    Ok(serials)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Issues a fresh certificate and key for `name` with `role` and replaces
/// the files at `cert_path` and `key_path` with them, each atomically (a
/// temporary file renamed over the old one). The key is replaced first; a
/// reader that sees the new key beside the old certificate finds a pair
/// that does not match and tries again later.
pub fn reissue_into(
    ca_dir: &Path,
    name: &str,
    role: Role,
    validity: Validity,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Issued> {
    let issued = issue_pem(ca_dir, name, role, validity)?;
    replace_file(key_path, issued.key_pem.as_bytes(), true)?;
    replace_file(cert_path, issued.cert_pem.as_bytes(), false)?;
    Ok(issued)
}

/// Writes `bytes` to a temporary file beside `path`, flushes it and renames
/// it over `path`.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} is not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.new", file_name.to_string_lossy()));
    if private {
        write_private(&tmp, bytes)?;
    } else {
        write_file(&tmp, bytes)?;
    }
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn tls_err(e: rcgen::Error) -> Error {
    Error::Identity(e.to_string())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_their_identity() {
        let dir = tempfile::tempdir().unwrap();
        init_fleet(dir.path(), "test").unwrap();
        assert!(
            init_fleet(dir.path(), "again").is_err(),
            "never overwrites a CA"
        );
        let (cert, key) = issue(dir.path(), dir.path(), "beijing", Role::Host).unwrap();
        let creds = Credentials::load(&dir.path().join("ca.pem"), &cert, &key).unwrap();
        assert_eq!(
            creds.identity,
            Identity {
                role: Role::Host,
                name: "beijing".parse().unwrap()
            }
        );
        let (cert, key) = issue(dir.path(), dir.path(), "ops", Role::Operator).unwrap();
        let creds = Credentials::load(&dir.path().join("ca.pem"), &cert, &key).unwrap();
        assert_eq!(creds.identity.role, Role::Operator);
        let (cert, key) = issue(dir.path(), dir.path(), "wall", Role::Viewer).unwrap();
        let creds = Credentials::load(&dir.path().join("ca.pem"), &cert, &key).unwrap();
        assert_eq!(creds.identity.role, Role::Viewer);
        assert!(issue(dir.path(), dir.path(), "Bad Name", Role::Host).is_err());
        assert!(issue(dir.path(), dir.path(), "-x", Role::Host).is_err());
    }
}
