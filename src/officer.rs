//! `kexin officer add`: an officer's identity for the console and the API.
//!
//! Kexin generates the officer's P-256 key in memory, has the `officials`
//! CA certify it (profile `tls-client`), records the certificate serial with
//! the role, and hands key and chain over in a PKCS#12 file protected by
//! `KEXIN_P12_PASSWORD` (PBES2 with AES-256-CBC, HMAC-SHA256 MAC). The key
//! is not kept.

use std::path::Path;

use anyhow::{bail, Context};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use der::Encode;
use kexin_ca::audit::AuditEvent;
use kexin_ca::certificate::parse_spki;
use kexin_ca::hierarchy::load_authority;
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;
use kexin_ca::profile::SubjectRequest;
use kexin_hsm::KeyAlgorithm;

use crate::instance::Instance;
use crate::private_files::write_private;

pub const P12_PASSWORD_ENV: &str = "KEXIN_P12_PASSWORD";

/// `kexin officer add`: the PKCS#12 file is written to `out`, protected
/// by `KEXIN_P12_PASSWORD`.
pub async fn add_to_file(
    instance: &Instance,
    name: &str,
    role: Role,
    out: &Path,
    requester: Requester<'_>,
) -> anyhow::Result<String> {
    let password = kexin_config::secret(P12_PASSWORD_ENV, None)?.with_context(|| {
        format!("set {P12_PASSWORD_ENV} (or {P12_PASSWORD_ENV}_FILE) to protect the PKCS#12 file")
    })?;
    if password.len() < 8 {
        bail!("{P12_PASSWORD_ENV} must be at least 8 characters");
    }
    if out.exists() {
        bail!("{} exists; refusing to overwrite it", out.display());
    }
    let (serial, p12) = add(instance, name, role, &password, requester).await?;
    write_private(out, &p12)?;
    Ok(serial)
}

/// Creates officer `name` with `role`; returns the certificate serial and
/// the PKCS#12 file (key and chain) protected by `password`.
pub async fn add(
    instance: &Instance,
    name: &str,
    role: Role,
    password: &str,
    requester: Requester<'_>,
) -> anyhow::Result<(String, Vec<u8>)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        bail!("an officer name is 1 to 64 printable characters");
    }
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
        .map_err(|_| anyhow::anyhow!("generating the officer key failed"))?;
    let spki = key
        .public_key()
        .as_der()
        .map_err(|_| anyhow::anyhow!("encoding the officer public key failed"))?;
    let officials = load_authority(&instance.db, "officials").await?;
    let mut subject = vec![(const_oid::db::rfc4519::CN, name.to_owned())];
    if let Some(org) = officials
        .certificate
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == const_oid::db::rfc4519::O)
        .and_then(|atv| der::asn1::Utf8StringRef::try_from(&atv.value).ok())
    {
        subject.insert(0, (const_oid::db::rfc4519::O, org.as_str().to_owned()));
    }
    let request = SubjectRequest {
        subject,
        names: vec![],
        public_key: parse_spki(spki.as_ref())?,
        key_algorithm: KeyAlgorithm::EcdsaP256,
    };
    let cert = instance
        .registration()?
        .issue(&request, "tls-client", Some("officials"), requester)
        .await?;
    let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    instance
        .db
        .insert_principal(&serial, name, role.as_str(), now)
        .await?;
    instance
        .audit
        .append(AuditEvent {
            actor: requester.actor,
            action: "officer.add",
            target: &serial,
            source: requester.source,
            detail: serde_json::json!({ "name": name, "role": role.as_str() }),
        })
        .await?;

    let pkcs8 = key
        .to_pkcs8v1()
        .map_err(|_| anyhow::anyhow!("encoding the officer key failed"))?;
    let chain = [cert.to_der()?, officials.certificate.to_der()?];
    let p12 = kexin_ca::kmc::pkcs12(name, pkcs8.as_ref(), &chain, password)?;
    Ok((serial, p12))
}
