//! Certificates officials sign in with, checked once and then recognised
//! by their bytes.
//!
//! What a certificate says (its chain to our root through the `officials`
//! CA, its subject, its key) cannot change, so a returning official's
//! certificate is not parsed and walked again at every sign-in: under perf
//! that was ~7% of a kept-alive signed-challenge sign-in's server CPU.
//! What can change is checked on every use: the time, against the span in
//! which the whole chain is valid, and the certificate's status in the
//! database (revoked, held), which the caller reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use der::Decode;
use kexin_ca::verify::{ValidityWindow, VerifiedSignatures};
use kexin_identity::provider::Official;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

/// A certificate found to chain to our root through the `officials` CA.
#[derive(Debug)]
pub struct OfficialCertificate {
    /// The account the certificate's subject maps to.
    pub official: Official,
    /// Hex, as the certificates table keys it.
    pub serial: String,
    /// The key a signed challenge must verify with.
    pub public_key: SubjectPublicKeyInfoOwned,
    /// When the certificate and every CA above it are valid.
    window: ValidityWindow,
}

/// The trust a certificate is checked against: our CAs never change while
/// the server runs, so neither does a certificate's verdict.
pub struct Trust<'a> {
    pub officials: &'a x509_cert::Certificate,
    pub intermediates: &'a [x509_cert::Certificate],
    pub roots: &'a [x509_cert::Certificate],
    pub signatures: &'a VerifiedSignatures,
}

/// Good certificates by the SHA-256 of their DER. Only certificates that
/// passed are kept, so foreign or forged ones cannot fill it; it is bounded
/// and starts over when full.
#[derive(Debug, Default)]
pub struct OfficialCertificates(Mutex<HashMap<[u8; 32], Arc<OfficialCertificate>>>);

/// An entry is ~1.5 KB (the official's claims as a JSON tree, the key):
/// at most ~15 MB, well inside the server's 150 MB. When full it starts
/// over, and each certificate is checked in full once more: that costs
/// time, not correctness.
const MAX_REMEMBERED: usize = 10_000;

impl OfficialCertificates {
    /// The certificate `der` as an official's, valid at `now` (unix
    /// seconds), or why not. Its status in the database is not looked at.
    pub fn check(
        &self,
        der: &[u8],
        trust: &Trust<'_>,
        now: u64,
    ) -> Result<Arc<OfficialCertificate>, String> {
        let key: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
            .as_ref()
            .try_into()
            .map_err(|_| "SHA-256 is 32 bytes".to_owned())?;
        if let Some(known) = self.remembered().get(&key) {
            if known.window.contains(now) {
                return Ok(known.clone());
            }
        }
        // Unknown, or outside its window: checked in full, which says why.
        let checked = Arc::new(first_check(der, trust, now)?);
        let mut remembered = self.remembered();
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(key, checked.clone());
        Ok(checked)
    }

    fn remembered(&self) -> MutexGuard<'_, HashMap<[u8; 32], Arc<OfficialCertificate>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn first_check(der: &[u8], trust: &Trust<'_>, now: u64) -> Result<OfficialCertificate, String> {
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|_| "unreadable certificate".to_owned())?;
    let v = &cert.tbs_certificate.validity;
    if now > v.not_after.to_unix_duration().as_secs() {
        return Err("this certificate has expired (证书已过期)".into());
    }
    if now < v.not_before.to_unix_duration().as_secs() {
        return Err("this certificate is not valid yet (证书尚未生效)".into());
    }
    let window = trust
        .signatures
        .check_chain(&cert, trust.intermediates, trust.roots, now)
        .map_err(|e| format!("the certificate does not chain to the trusted root: {e}"))?;
    if cert.tbs_certificate.issuer != trust.officials.tbs_certificate.subject {
        return Err("this certificate is not from the officials CA".into());
    }
    let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
    let attributes =
        kexin_ca::csr::name_attributes(&cert.tbs_certificate.subject).unwrap_or_default();
    let find = |oid| {
        attributes
            .iter()
            .find(|(o, _)| *o == oid)
            .map(|(_, v)| v.as_str())
    };
    Ok(OfficialCertificate {
        official: Official::from_certificate(
            &cert.tbs_certificate.subject.to_string(),
            find(const_oid::db::rfc4519::CN),
            find(const_oid::db::rfc4519::O),
            &serial,
        ),
        serial,
        public_key: cert.tbs_certificate.subject_public_key_info,
        window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kexin_test_support::openssl;

    const DAY: u64 = 86_400;

    /// Makes `name`.pem/.key in `dir`, self-signed or by `issuer`, valid for
    /// `days` from now.
    fn certificate(
        dir: &std::path::Path,
        name: &str,
        subject: &str,
        issuer: Option<&str>,
        days: &str,
    ) {
        let at = |ext: &str| {
            dir.join(format!("{name}.{ext}"))
                .to_string_lossy()
                .into_owned()
        };
        let (key, pem, csr) = (at("key"), at("pem"), at("csr"));
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
        ];
        let made = match issuer {
            None => openssl(
                &[
                    &["req", "-x509"][..],
                    &new_key,
                    &["-subj", subject, "-days", days, "-out", &pem],
                ]
                .concat(),
            ),
            Some(issuer) => {
                let (ca_pem, ca_key) = (
                    dir.join(format!("{issuer}.pem"))
                        .to_string_lossy()
                        .into_owned(),
                    dir.join(format!("{issuer}.key"))
                        .to_string_lossy()
                        .into_owned(),
                );
                let requested = openssl(
                    &[
                        &["req", "-new"][..],
                        &new_key,
                        &["-subj", subject, "-out", &csr],
                    ]
                    .concat(),
                );
                assert!(requested.0, "{}", requested.1);
                openssl(&[
                    "x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-days", days,
                    "-out", &pem,
                ])
            }
        };
        assert!(made.0, "{}", made.1);
    }

    fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
        let pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
        kexin_ca::certificate::first_certificate_der_from_pem(&pem).unwrap()
    }

    #[test]
    fn a_remembered_certificate_is_still_refused_outside_its_chain_s_validity() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        certificate(d, "root", "/CN=Root", None, "10");
        // The officials CA expires before the official's certificate does.
        certificate(d, "officials", "/CN=Officials", Some("root"), "1");
        certificate(
            d,
            "official",
            "/O=Civil Affairs/CN=zhang-san",
            Some("officials"),
            "3",
        );
        certificate(d, "by-root", "/CN=li-si", Some("root"), "3");
        certificate(d, "foreign", "/CN=wang-wu", None, "3");
        let parse = |name| x509_cert::Certificate::from_der(&read(d, name)).unwrap();
        let (root, officials) = (parse("root"), parse("officials"));
        let signatures = VerifiedSignatures::default();
        let trust = Trust {
            officials: &officials,
            intermediates: std::slice::from_ref(&officials),
            roots: std::slice::from_ref(&root),
            signatures: &signatures,
        };
        let remembered = OfficialCertificates::default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let official = read(d, "official");

        let first = remembered.check(&official, &trust, now).unwrap();
        assert_eq!(first.official.claims["name"], "zhang-san");
        assert_eq!(first.official.claims["org"], "Civil Affairs");
        let again = remembered.check(&official, &trust, now + 60).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "a returning certificate is recognised"
        );

        // The certificate itself is good for three days, but its CA only for one.
        let after_ca = remembered
            .check(&official, &trust, now + DAY + DAY / 2)
            .unwrap_err();
        assert!(after_ca.contains("does not chain"), "{after_ca}");
        let expired = remembered
            .check(&official, &trust, now + 4 * DAY)
            .unwrap_err();
        assert!(expired.contains("expired"), "{expired}");
        let early = remembered.check(&official, &trust, now - DAY).unwrap_err();
        assert!(early.contains("not valid yet"), "{early}");
        assert!(remembered.check(&official, &trust, now).is_ok());

        // Refusals are not remembered, and say why.
        for _ in 0..2 {
            let by_root = remembered
                .check(&read(d, "by-root"), &trust, now)
                .unwrap_err();
            assert!(by_root.contains("not from the officials CA"), "{by_root}");
            let foreign = remembered
                .check(&read(d, "foreign"), &trust, now)
                .unwrap_err();
            assert!(foreign.contains("does not chain"), "{foreign}");
            let mut altered = official.clone();
            let last = altered.len() - 1;
            altered[last] ^= 1;
            let forged = remembered.check(&altered, &trust, now).unwrap_err();
            assert!(forged.contains("does not chain"), "{forged}");
            assert_eq!(
                remembered.check(b"junk", &trust, now).unwrap_err(),
                "unreadable certificate"
            );
        }
        assert_eq!(remembered.remembered().len(), 1);
    }
}
