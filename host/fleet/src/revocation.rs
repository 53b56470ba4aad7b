//! Revocation: a certificate revocation list signed by the fleet CA.
//!
//! Certificates expire on their own (30 days for an operator's), but a
//! stolen laptop cannot wait that long. `edgehost fleet revoke NAME` adds
//! every serial the CA ever issued to NAME (the CA directory records them,
//! [`crate::identity::ISSUED_FILE`]) to an X.509 CRL signed by the CA key,
//! with a CRL number one higher than the last, and sends it to the hosts.
//!
//! A host takes a list only if the fleet CA signed it and its number is
//! higher than the one it holds, so a forged list changes nothing and an
//! old one (replayed, or gossiped by a host that missed an update) never
//! undoes a newer one. It keeps the list in its data directory, loads it at
//! start, and passes it to peers whose number is lower, so a host that was
//! down when the operator revoked gets the list from any peer. Every TLS
//! handshake, in both directions, consults the list held at that moment
//! ([`Revocations::is_revoked`]); a new list also closes the connections of
//! the identities it revokes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::watch;

use crate::identity::{issued_serials, normal_serial, replace_file};
use crate::{Error, Result};

/// The CA directory's current list, as PEM.
pub const CA_LIST_FILE: &str = "crl.pem";
/// The list a host holds, as DER, in its data directory.
pub const HOST_LIST_FILE: &str = "revocations.crl";
/// Largest list a host accepts, bytes: some ten thousand revoked serials.
pub const MAX_LIST_BYTES: usize = crate::protocol::MAX_REVOCATION_LIST_BYTES;

/// A revocation list whose signature by the fleet CA has been checked.
#[derive(Debug, Clone)]
pub struct RevocationList {
    der: Vec<u8>,
    number: u64,
    /// Revoked serials (without leading zeros) and when each was revoked,
    /// seconds since the Unix epoch.
    revoked: HashMap<Vec<u8>, i64>,
}

impl RevocationList {
    /// Parses a DER CRL and checks that `ca` issued and signed it and that
    /// it carries a CRL number.
    pub fn verify(der: &[u8], ca: &CertificateDer<'_>) -> Result<Self> {
        if der.len() > MAX_LIST_BYTES {
            return Err(Error::BadRequest(format!(
                "a revocation list of {} bytes is over the {MAX_LIST_BYTES}-byte limit",
                der.len()
            )));
        }
        let (_, ca_cert) = x509_parser::parse_x509_certificate(ca.as_ref())
            .map_err(|e| Error::Identity(format!("fleet CA: {e}")))?;
        let (rest, crl) = x509_parser::parse_x509_crl(der)
            .map_err(|e| Error::BadRequest(format!("not a revocation list: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::BadRequest(
                "trailing bytes after the revocation list".into(),
            ));
        }
        if crl.issuer().as_raw() != ca_cert.subject().as_raw() {
            return Err(Error::Forbidden(
                "the revocation list was not issued by this fleet's CA".into(),
            ));
        }
        crl.verify_signature(ca_cert.public_key()).map_err(|_| {
            Error::Forbidden("the revocation list is not signed by this fleet's CA".into())
        })?;
        let number = crl
            .crl_number()
            .ok_or_else(|| Error::BadRequest("the revocation list has no number".into()))?
            .to_u64_digits();
        let number = match number.as_slice() {
            [] => 0,
            [n] => *n,
            _ => {
                return Err(Error::BadRequest(
                    "the revocation list's number is out of range".into(),
                ));
            }
        };
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| (normal_serial(r.raw_serial()), r.revocation_date.timestamp()))
            .collect();
        Ok(RevocationList {
            der: der.to_vec(),
            number,
            revoked,
        })
    }

    /// The CRL number: a newer list has a higher one.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The list as DER, as sent on the wire.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// How many certificates it revokes.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether it revokes nothing.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// Whether it revokes the certificate with this serial.
    pub fn revokes_serial(&self, serial: &[u8]) -> bool {
        self.revoked.contains_key(&normal_serial(serial))
    }
}

/// The list in the CA directory `ca_dir`, if there is one (checked against
/// the CA there).
pub fn ca_list(ca_dir: &Path) -> Result<Option<RevocationList>> {
    let path = ca_dir.join(CA_LIST_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let ca = CertificateDer::from_pem_file(ca_dir.join("ca.pem"))
        .map_err(|e| Error::Identity(format!("{}: {e}", ca_dir.join("ca.pem").display())))?;
    let der = rustls::pki_types::CertificateRevocationListDer::from_pem_file(&path)
        .map_err(|e| Error::Identity(format!("{}: {e}", path.display())))?;
    RevocationList::verify(der.as_ref(), &ca).map(Some)
}

/// Revokes every certificate the CA in `ca_dir` issued to `name`: writes a
/// new list there with those serials added and the number raised by one,
/// and returns it. Fails, changing nothing, when the CA has no record of
/// `name`.
pub fn revoke(ca_dir: &Path, name: &str) -> Result<RevocationList> {
    crate::identity::check_name(name)?;
    let serials = issued_serials(ca_dir, name)?;
    if serials.is_empty() {
        return Err(Error::Identity(format!(
            "{} records no certificate issued to {name:?}",
            ca_dir.join(crate::identity::ISSUED_FILE).display()
        )));
    }
    let previous = ca_list(ca_dir)?;
    let now = SystemTime::now();
    let now_secs = unix_secs(now);
    let mut revoked = previous
        .as_ref()
        .map(|l| l.revoked.clone())
        .unwrap_or_default();
    for serial in serials {
        revoked.entry(normal_serial(&serial)).or_insert(now_secs);
    }
    let number = previous
        .as_ref()
        .map_or(0, RevocationList::number)
        .checked_add(1)
        .ok_or_else(|| Error::Identity("the revocation list's number is exhausted".into()))?;
    let mut entries: Vec<(Vec<u8>, i64)> = revoked.into_iter().collect();
    entries.sort();
    let revoked_certs = entries
        .iter()
        .map(|(serial, at)| {
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: offset(*at)?,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Hosts never let a list lapse by date; a list is replaced only by one
    // with a higher number. The dates satisfy the format.
    let params = CertificateRevocationListParams {
        this_update: offset(now_secs)?,
        next_update: offset(unix_secs(now + Duration::from_secs(3650 * 86_400)))?,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let ca_pem = fs::read_to_string(ca_dir.join("ca.pem"))
        .map_err(|e| Error::io(ca_dir.join("ca.pem"), e))?;
    let issuer = crate::identity::ca_issuer(ca_dir, &ca_pem)?;
    let crl = params
        .signed_by(&issuer)
        .map_err(|e| Error::Identity(e.to_string()))?;
    let pem = crl.pem().map_err(|e| Error::Identity(e.to_string()))?;
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| Error::Identity(format!("fleet CA: {e}")))?;
    let list = RevocationList::verify(crl.der().as_ref(), &ca)?;
    replace_file(&ca_dir.join(CA_LIST_FILE), pem.as_bytes(), false)?;
    Ok(list)
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn offset(secs: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| Error::Identity(format!("revocation date: {e}")))
}

/// What became of a list offered to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// It was newer: the host holds it now, with this number.
    Applied(u64),
    /// It was not newer than the host's list, whose number this is.
    Kept(u64),
}

/// The list a host holds, shared by its TLS verifiers and its handlers.
#[derive(Debug)]
pub struct Revocations {
    ca: CertificateDer<'static>,
    current: RwLock<Option<Arc<RevocationList>>>,
    /// Where the list is kept, for a host; `None` keeps it in memory only.
    file: Option<PathBuf>,
    /// One offer at a time: the check of the number and the write to disk
    /// go together.
    offering: Mutex<()>,
    /// The number of the list held, for those who close connections when
    /// it changes.
    changed: watch::Sender<u64>,
}

impl Revocations {
    /// No list: nothing is revoked, nothing is kept on disk.
    pub fn none(ca: CertificateDer<'static>) -> Self {
        Revocations {
            ca,
            current: RwLock::new(None),
            file: None,
            offering: Mutex::new(()),
            changed: watch::channel(0).0,
        }
    }

    /// The list kept in `file`, if it exists; new lists are written there.
    /// A file that holds no list signed by `ca` is an error: a host must not
    /// start having forgotten what was revoked.
    pub fn open(ca: CertificateDer<'static>, file: PathBuf) -> Result<Self> {
        let current = match fs::read(&file) {
            Ok(der) => Some(Arc::new(
                RevocationList::verify(&der, &ca)
                    .map_err(|e| Error::Identity(format!("{}: {e}", file.display())))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&file, e)),
        };
        let number = current.as_ref().map_or(0, |l| l.number());
        Ok(Revocations {
            ca,
            current: RwLock::new(current),
            file: Some(file),
            offering: Mutex::new(()),
            changed: watch::channel(number).0,
        })
    }

    /// The list held now.
    pub fn current(&self) -> Option<Arc<RevocationList>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The number of the list held (0 for none).
    pub fn number(&self) -> u64 {
        self.current().map_or(0, |l| l.number())
    }

    /// Takes `der` if the fleet CA signed it and it is newer than the list
    /// held; keeps it on disk first. A list that does not verify is an
    /// error and changes nothing.
    pub fn offer(&self, der: &[u8]) -> Result<Offered> {
        let _one = self
            .offering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = self.current();
        if let Some(held) = &held
            && held.der() == der
        {
            return Ok(Offered::Kept(held.number()));
        }
        let list = RevocationList::verify(der, &self.ca)?;
        let held_number = held.as_ref().map_or(0, |l| l.number());
        if list.number() <= held_number {
            return Ok(Offered::Kept(held_number));
        }
        if let Some(file) = &self.file {
            replace_file(file, der, false)?;
        }
        let number = list.number();
        tracing::info!(number, revoked = list.len(), "new revocation list");
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(list));
        self.changed.send_replace(number);
        Ok(Offered::Applied(number))
    }

    /// Whether the list held revokes `cert`. A certificate whose serial
    /// cannot be read counts as revoked: it is refused.
    pub fn is_revoked(&self, cert: &CertificateDer<'_>) -> bool {
        let Some(list) = self.current() else {
            return false;
        };
        match crate::identity::serial_of(cert.as_ref()) {
            Ok(serial) => list.revokes_serial(&serial),
            Err(_) => true,
        }
    }

    /// Changes with every new list.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Role, init_fleet, issue};

    fn ca_der(dir: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()
    }

    #[test]
    fn revoking_a_name_revokes_every_certificate_issued_to_it() {
        let dir = tempfile::tempdir().unwrap();
        init_fleet(dir.path(), "t").unwrap();
        let out = dir.path().join("out");
        let (first, _) = issue(dir.path(), &out, "ops", Role::Operator).unwrap();
        let first = CertificateDer::from_pem_file(&first).unwrap();
        let (second, _) = issue(dir.path(), &out, "ops", Role::Operator).unwrap();
        let second = CertificateDer::from_pem_file(&second).unwrap();
        let (other, _) = issue(dir.path(), &out, "other", Role::Operator).unwrap();
        let other = CertificateDer::from_pem_file(&other).unwrap();
        assert!(revoke(dir.path(), "nobody").is_err());
        assert!(ca_list(dir.path()).unwrap().is_none(), "nothing written");

        let list = revoke(dir.path(), "ops").unwrap();
        assert_eq!((list.number(), list.len()), (1, 2));
        let held = Revocations::none(ca_der(dir.path()));
        assert_eq!(held.offer(list.der()).unwrap(), Offered::Applied(1));
        assert!(held.is_revoked(&first) && held.is_revoked(&second));
        assert!(!held.is_revoked(&other));

        let newer = revoke(dir.path(), "other").unwrap();
        assert_eq!((newer.number(), newer.len()), (2, 3));
        assert_eq!(held.offer(newer.der()).unwrap(), Offered::Applied(2));
        assert_eq!(held.offer(list.der()).unwrap(), Offered::Kept(2));
        assert!(held.is_revoked(&other));
    }

    #[test]
    fn a_list_from_another_ca_is_refused() {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        init_fleet(ours.path(), "ours").unwrap();
        // The same CA name: only the signature tells them apart.
        init_fleet(theirs.path(), "ours").unwrap();
        issue(theirs.path(), theirs.path(), "ops", Role::Operator).unwrap();
        let forged = revoke(theirs.path(), "ops").unwrap();
        let held = Revocations::none(ca_der(ours.path()));
        assert!(held.offer(forged.der()).is_err());
        assert!(held.offer(b"not a list").is_err());
        assert_eq!(held.number(), 0);
    }
}
