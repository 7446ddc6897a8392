//! Certificate profiles: what a certificate of each kind may contain.
//!
//! The shipped defaults live in `ca/profiles/*.toml`; an operator adds or
//! replaces profiles with `DATA/profiles/<name>.toml` files of the same
//! shape. The profile, not the request, decides every extension; the request
//! only supplies the subject, the names and the public key, and those are
//! checked against the profile's rules.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use const_oid::db::rfc4519;
use const_oid::ObjectIdentifier;
use der::asn1::{Ia5String, Null};
use flagset::FlagSet;
use kexin_hsm::KeyAlgorithm;
use serde::Deserialize;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{CertificatePolicies, KeyUsages};
use x509_cert::ext::Extension;

use crate::certificate::{
    authority_info_access, authority_key_identifier, basic_constraints, crl_distribution_point,
    der_err, extended_key_usage, extension, key_identifier, key_usage, subject_key_identifier,
    CertificateTemplate, DistinguishedName,
};
use crate::issuance::SigningAuthority;
use crate::Error;

/// organizationIdentifier (X.520), where seals carry the unified social credit code.
pub const OID_ORGANIZATION_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.97");
/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
pub const OID_OCSP_NOCHECK: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");

const BUILTIN: [(&str, &str); 7] = [
    (
        "official-sign",
        include_str!("../profiles/official-sign.toml"),
    ),
    (
        "official-enc",
        include_str!("../profiles/official-enc.toml"),
    ),
    ("tls-server", include_str!("../profiles/tls-server.toml")),
    ("tls-client", include_str!("../profiles/tls-client.toml")),
    ("seal", include_str!("../profiles/seal.toml")),
    ("tsa", include_str!("../profiles/tsa.toml")),
    ("ocsp-signer", include_str!("../profiles/ocsp-signer.toml")),
];

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SanKind {
    Dns,
    Ip,
    Email,
    Uri,
}

fn all_algorithms() -> Vec<KeyAlgorithm> {
    KeyAlgorithm::ALL.to_vec()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(skip)]
    pub name: String,
    /// Where the profile came from: `built-in` or the file's path.
    #[serde(skip)]
    pub origin: String,
    /// SHA-256 of the profile's TOML text, to notice changes.
    #[serde(skip)]
    pub digest: String,
    pub description: String,
    /// CAs that may sign with this profile; the first is the default.
    pub issuers: Vec<String>,
    pub validity_days: u32,
    pub key_usage: Vec<String>,
    #[serde(default)]
    pub extended_key_usage: Vec<String>,
    #[serde(default)]
    pub extended_key_usage_critical: bool,
    #[serde(default = "all_algorithms")]
    pub key_algorithms: Vec<KeyAlgorithm>,
    #[serde(default)]
    pub subject_required: Vec<String>,
    pub subject_allowed: Vec<String>,
    #[serde(default)]
    pub san_allowed: Vec<SanKind>,
    #[serde(default)]
    pub san_required: bool,
    /// Certificate policy OIDs.
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub ocsp_nocheck: bool,
    /// How many officers (other than the submitter) must approve a request
    /// under this profile, and a revocation of its certificates: 1 or 2.
    #[serde(default = "one")]
    pub approvals: u8,
}

fn one() -> u8 {
    1
}

/// The request side of issuance, already authenticated (CSR signature checked).
#[derive(Clone, Debug)]
pub struct SubjectRequest {
    pub subject: Vec<(ObjectIdentifier, String)>,
    pub names: Vec<GeneralName>,
    pub public_key: SubjectPublicKeyInfoOwned,
    pub key_algorithm: KeyAlgorithm,
}

/// Where a certificate's AIA and CDP point.
#[derive(Clone, Debug)]
pub struct RepositoryUrls {
    pub base: String,
}

impl RepositoryUrls {
    pub fn ca_certificate(&self, ca: &str) -> String {
        format!("{}/pki/ca/{ca}.crt", self.base.trim_end_matches('/'))
    }
    pub fn crl(&self, ca: &str) -> String {
        format!("{}/pki/crl/{ca}.crl", self.base.trim_end_matches('/'))
    }
    pub fn ocsp(&self) -> String {
        format!("{}/ocsp", self.base.trim_end_matches('/'))
    }
}

/// All profiles by name.
#[derive(Clone, Debug)]
pub struct Profiles(BTreeMap<String, Profile>);

impl Profiles {
    /// The shipped profiles, overridden and extended by `dir/*.toml` if `dir` exists.
    pub fn load(dir: Option<&Path>) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for (name, text) in BUILTIN {
            map.insert(name.to_owned(), parse(name, text, "built-in")?);
        }
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| Error::Profile(format!("{}: {e}", dir.display())))?;
            for entry in entries {
                let path = entry.map_err(|e| Error::Profile(e.to_string()))?.path();
                if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                    continue;
                }
                let name = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .ok_or_else(|| Error::Profile(format!("{}: bad file name", path.display())))?
                    .to_owned();
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::Profile(format!("{}: {e}", path.display())))?;
                map.insert(
                    name.clone(),
                    parse(&name, &text, &path.display().to_string())?,
                );
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Result<&Profile, Error> {
        self.0
            .get(name)
            .ok_or_else(|| Error::Profile(format!("no profile named {name:?}")))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Records in the audit log every profile that is new or whose text
    /// changed since the log last saw it. Returns the names recorded.
    pub async fn audit_changes(
        &self,
        audit: &crate::audit::AuditLog,
        requester: crate::issuance::Requester<'_>,
    ) -> Result<Vec<String>, Error> {
        let mut changed = Vec::new();
        for p in self.0.values() {
            let last = audit.latest_detail("profile.change", &p.name).await?;
            let known = last
                .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                .and_then(|v| v["sha256"].as_str().map(str::to_owned));
            if known.as_deref() == Some(p.digest.as_str()) {
                continue;
            }
            audit
                .append(crate::audit::AuditEvent {
                    actor: requester.actor,
                    action: "profile.change",
                    target: &p.name,
                    source: requester.source,
                    detail: serde_json::json!({
                        "sha256": p.digest,
                        "previous_sha256": known,
                        "origin": p.origin,
                        "issuers": p.issuers,
                        "validity_days": p.validity_days,
                    }),
                })
                .await?;
            changed.push(p.name.clone());
        }
        Ok(changed)
    }
}

fn parse(name: &str, text: &str, origin: &str) -> Result<Profile, Error> {
    let mut p: Profile = toml::from_str(text)
        .map_err(|e| Error::Profile(format!("profile {name} ({origin}): {e}")))?;
    p.name = name.to_owned();
    p.origin = origin.to_owned();
    p.digest = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        text.as_bytes(),
    ));
    for ku in &p.key_usage {
        key_usage_flag(ku).map_err(|e| Error::Profile(format!("profile {name}: {e}")))?;
    }
    for eku in &p.extended_key_usage {
        eku_oid(eku).map_err(|e| Error::Profile(format!("profile {name}: {e}")))?;
    }
    for attr in p.subject_allowed.iter().chain(&p.subject_required) {
        attribute_oid(attr).map_err(|e| Error::Profile(format!("profile {name}: {e}")))?;
    }
    for policy in &p.policies {
        policy.parse::<ObjectIdentifier>().map_err(|_| {
            Error::Profile(format!("profile {name}: policy {policy:?} is not an OID"))
        })?;
    }
    if !(1..=2).contains(&p.approvals) {
        return Err(Error::Profile(format!(
            "profile {name}: approvals must be 1 or 2"
        )));
    }
    if p.issuers.is_empty() || p.validity_days == 0 {
        return Err(Error::Profile(format!(
            "profile {name}: needs issuers and validity_days"
        )));
    }
    Ok(p)
}

fn key_usage_flag(name: &str) -> Result<KeyUsages, String> {
    Ok(match name {
        "digitalSignature" => KeyUsages::DigitalSignature,
        "nonRepudiation" | "contentCommitment" => KeyUsages::NonRepudiation,
        "keyEncipherment" => KeyUsages::KeyEncipherment,
        "dataEncipherment" => KeyUsages::DataEncipherment,
        "keyAgreement" => KeyUsages::KeyAgreement,
        other => return Err(format!("unknown or CA-only key usage {other:?}")),
    })
}

fn eku_oid(name: &str) -> Result<ObjectIdentifier, String> {
    let oid = match name {
        "serverAuth" => "1.3.6.1.5.5.7.3.1",
        "clientAuth" => "1.3.6.1.5.5.7.3.2",
        "codeSigning" => "1.3.6.1.5.5.7.3.3",
        "emailProtection" => "1.3.6.1.5.5.7.3.4",
        "timeStamping" => "1.3.6.1.5.5.7.3.8",
        "OCSPSigning" => "1.3.6.1.5.5.7.3.9",
        "documentSigning" => "1.3.6.1.5.5.7.3.36",
        other => other,
    };
    oid.parse()
        .map_err(|_| format!("unknown extended key usage {name:?}"))
}

pub fn attribute_oid(name: &str) -> Result<ObjectIdentifier, String> {
    Ok(match name {
        "C" => rfc4519::C,
        "ST" => rfc4519::ST,
        "L" => rfc4519::L,
        "O" => rfc4519::O,
        "OU" => rfc4519::OU,
        "CN" => rfc4519::CN,
        "serialNumber" => rfc4519::SERIAL_NUMBER,
        "organizationIdentifier" => OID_ORGANIZATION_IDENTIFIER,
        other => return Err(format!("unknown subject attribute {other:?}")),
    })
}

/// The name of a subject attribute Kexin issues, or its dotted OID.
pub(crate) fn attribute_name(oid: ObjectIdentifier) -> String {
    for n in [
        "C",
        "ST",
        "L",
        "O",
        "OU",
        "CN",
        "serialNumber",
        "organizationIdentifier",
    ] {
        if attribute_oid(n) == Ok(oid) {
            return n.to_owned();
        }
    }
    oid.to_string()
}

/// A distinguished name for people to read: most specific attribute
/// first, with the attributes Kexin issues by their names (so that the
/// unified social credit code in organizationIdentifier reads as text, not
/// as hex). Names with other string types fall back to RFC 4514.
pub fn readable_name(name: &x509_cert::name::Name) -> String {
    match crate::csr::name_attributes(name) {
        Ok(attributes) => attributes
            .iter()
            .rev()
            .map(|(oid, value)| format!("{}={value}", attribute_name(*oid)))
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) => name.to_string(),
    }
}

/// GB 32100-2015 unified social credit code: 18 characters with a check character.
pub fn is_valid_uscc(code: &str) -> bool {
    const CHARSET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return false;
    }
    let mut sum = 0;
    for (c, w) in chars[..17].iter().zip(WEIGHTS) {
        match CHARSET.find(*c) {
            Some(v) => sum += v as u32 * w,
            None => return false,
        }
    }
    let check = (31 - sum % 31) % 31;
    CHARSET.chars().nth(check as usize) == Some(chars[17])
}

impl Profile {
    /// Checks `req` against this profile and builds the certificate it allows.
    /// Every problem is reported at once.
    pub fn template(
        &self,
        req: &SubjectRequest,
        issuer: &SigningAuthority,
        urls: &RepositoryUrls,
        now: SystemTime,
    ) -> Result<CertificateTemplate, Error> {
        let mut problems = Vec::new();
        if !self.issuers.contains(&issuer.name) {
            problems.push(format!(
                "profile {} is not issued by CA {}",
                self.name, issuer.name
            ));
        }
        if !self.key_algorithms.contains(&req.key_algorithm) {
            problems.push(format!(
                "{} keys are not allowed by profile {}",
                req.key_algorithm, self.name
            ));
        }
        let allowed: Vec<ObjectIdentifier> = self
            .subject_allowed
            .iter()
            .filter_map(|a| attribute_oid(a).ok())
            .collect();
        let mut dn = DistinguishedName::new();
        for (oid, value) in &req.subject {
            let name = attribute_name(*oid);
            if !allowed.contains(oid) {
                problems.push(format!("subject attribute {name} is not allowed"));
                continue;
            }
            let value = value.trim();
            if value.is_empty()
                || value.chars().count() > 128
                || value.chars().any(char::is_control)
            {
                problems.push(format!(
                    "subject attribute {name} must be 1-128 characters without control characters"
                ));
                continue;
            }
            if *oid == rfc4519::C
                && !(value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()))
            {
                problems.push("subject C must be a two-letter ISO 3166 code".into());
            }
            if *oid == rfc4519::CN && value.chars().count() > 64 {
                problems.push("subject CN is longer than 64 characters".into());
            }
            if *oid == OID_ORGANIZATION_IDENTIFIER && !is_valid_uscc(value) {
                problems.push(format!(
                    "organizationIdentifier {value:?} is not a valid unified social credit code"
                ));
            }
            dn = dn.with(*oid, value);
        }
        for required in &self.subject_required {
            let oid = attribute_oid(required).unwrap_or(rfc4519::CN);
            if !req.subject.iter().any(|(o, _)| *o == oid) {
                problems.push(format!("subject attribute {required} is required"));
            }
        }
        for name in &req.names {
            if let Err(p) = self.check_name(name) {
                problems.push(p);
            }
        }
        if self.key_usage_for(req.key_algorithm).is_empty() {
            problems.push(format!(
                "no key usage of profile {} fits a {} key",
                self.name, req.key_algorithm
            ));
        }
        if self.san_required && req.names.is_empty() {
            problems.push(format!(
                "profile {} requires subjectAltName entries",
                self.name
            ));
        }
        if req.subject.is_empty() && req.names.is_empty() {
            problems.push("neither a subject nor subjectAltName entries".into());
        }
        if !problems.is_empty() {
            return Err(Error::Policy(problems));
        }

        let issuer_tbs = &issuer.certificate.tbs_certificate;
        let not_before = now - Duration::from_secs(60);
        let issuer_end = SystemTime::UNIX_EPOCH + issuer_tbs.validity.not_after.to_unix_duration();
        let not_after =
            (now + Duration::from_secs(u64::from(self.validity_days) * 86400)).min(issuer_end);

        let mut extensions = vec![
            basic_constraints(false, None)?,
            key_usage(self.key_usage_for(req.key_algorithm))?,
        ];
        if !self.extended_key_usage.is_empty() {
            let oids = self
                .extended_key_usage
                .iter()
                .map(|e| eku_oid(e).map_err(Error::Profile))
                .collect::<Result<Vec<_>, _>>()?;
            extensions.push(extended_key_usage(oids, self.extended_key_usage_critical)?);
        }
        if !req.names.is_empty() {
            extensions.push(extension(
                &x509_cert::ext::pkix::SubjectAltName(req.names.clone()),
                req.subject.is_empty(),
            )?);
        }
        extensions.push(subject_key_identifier(&req.public_key)?);
        extensions.push(authority_key_identifier(&key_identifier(
            &issuer_tbs.subject_public_key_info,
        ))?);
        let ocsp = urls.ocsp();
        extensions.push(authority_info_access(
            &urls.ca_certificate(&issuer.name),
            (!self.ocsp_nocheck).then_some(ocsp.as_str()),
        )?);
        extensions.push(crl_distribution_point(&urls.crl(&issuer.name))?);
        if !self.policies.is_empty() {
            let policies = self
                .policies
                .iter()
                .map(|p| {
                    Ok(PolicyInformation {
                        policy_identifier: p
                            .parse()
                            .map_err(|_| Error::Profile(format!("policy {p:?} is not an OID")))?,
                        policy_qualifiers: None,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            extensions.push(extension(&CertificatePolicies(policies), false)?);
        }
        if self.ocsp_nocheck {
            extensions.push(Extension {
                extn_id: OID_OCSP_NOCHECK,
                critical: false,
                extn_value: der::asn1::OctetString::new(
                    der::Encode::to_der(&Null).map_err(der_err)?,
                )
                .map_err(der_err)?,
            });
        }
        Ok(CertificateTemplate {
            subject: dn.to_name()?,
            public_key: req.public_key.clone(),
            not_before,
            not_after,
            extensions,
        })
    }

    /// keyEncipherment and dataEncipherment only make sense for keys that
    /// encrypt (RSA, SM2), keyAgreement only for ECDH-capable keys; usages a
    /// key cannot have are dropped rather than certified.
    fn key_usage_for(&self, key: KeyAlgorithm) -> FlagSet<KeyUsages> {
        let mut flags = FlagSet::<KeyUsages>::default();
        let encrypts = key.is_rsa() || key == KeyAlgorithm::Sm2;
        let agrees = matches!(
            key,
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 | KeyAlgorithm::Sm2
        );
        for name in &self.key_usage {
            let Ok(flag) = key_usage_flag(name) else {
                continue;
            };
            let fits = match flag {
                KeyUsages::KeyEncipherment | KeyUsages::DataEncipherment => encrypts,
                KeyUsages::KeyAgreement => agrees,
                _ => true,
            };
            if fits {
                flags |= flag;
            }
        }
        flags
    }

    fn check_name(&self, name: &GeneralName) -> Result<(), String> {
        let (kind, ok) = match name {
            GeneralName::DnsName(d) => (SanKind::Dns, is_dns_name(d)),
            GeneralName::IpAddress(ip) => (SanKind::Ip, matches!(ip.as_bytes().len(), 4 | 16)),
            GeneralName::Rfc822Name(e) => (SanKind::Email, is_email(e)),
            GeneralName::UniformResourceIdentifier(u) => (SanKind::Uri, u.as_str().contains("://")),
            _ => {
                return Err(
                    "only DNS, IP, email and URI subjectAltName entries are supported".into(),
                )
            }
        };
        if !self.san_allowed.contains(&kind) {
            return Err(format!(
                "{kind:?} subjectAltName entries are not allowed by profile {}",
                self.name
            ));
        }
        if !ok {
            return Err(format!("malformed {kind:?} subjectAltName entry"));
        }
        Ok(())
    }
}

fn is_dns_name(d: &Ia5String) -> bool {
    let s = d.as_str();
    let s = s.strip_prefix("*.").unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_email(e: &Ia5String) -> bool {
    match e.as_str().split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse() {
        let p = Profiles::load(None).unwrap();
        for name in [
            "official-sign",
            "official-enc",
            "tls-server",
            "tls-client",
            "seal",
            "tsa",
            "ocsp-signer",
        ] {
            p.get(name).unwrap();
        }
    }

    #[test]
    fn uscc_check_digit() {
        assert!(is_valid_uscc("91350100M000100Y43"));
        assert!(!is_valid_uscc("91350100M000100Y44"));
        assert!(!is_valid_uscc("short"));
    }

    #[test]
    fn operator_profile_overrides_and_bad_profile_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tls-server.toml"),
            "description = \"short\"\nissuers = [\"systems\"]\nvalidity_days = 90\nkey_usage = [\"digitalSignature\"]\nsubject_allowed = [\"CN\"]\nsan_allowed = [\"dns\"]\n",
        )
        .unwrap();
        let p = Profiles::load(Some(dir.path())).unwrap();
        assert_eq!(p.get("tls-server").unwrap().validity_days, 90);
        std::fs::write(dir.path().join("broken.toml"), "issuers = 3").unwrap();
        let err = Profiles::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("broken"), "{err}");
    }
}
