//! The default CA hierarchy made by `kexin init`: a self-signed root and the
//! issuing CAs `officials`, `systems` and `seals` (pathLen 0), plus the
//! HTTPS server certificate of this instance, issued by `systems`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use der::{Decode, Encode};
use kexin_hsm::{KeyAlgorithm, KeyStore, SignatureAlgorithm};
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::Certificate;

use crate::audit::{AuditEvent, AuditLog};
use crate::certificate::{
    authority_info_access, authority_key_identifier, basic_constraints, crl_distribution_point,
    extended_key_usage, key_identifier, key_usage, name_constraints_dns, parse_spki,
    subject_alt_name, subject_key_identifier, CertificateTemplate, DistinguishedName,
    OID_KP_SERVER_AUTH,
};
use crate::issuance::{now, Issuer, Requester, Signer, SigningAuthority};
use crate::storage::{AuthorityRecord, Database};
use crate::Error;

/// Name of the root CA.
pub const ROOT: &str = "root";

/// The issuing CAs and the common-name suffix each gets.
pub const ISSUING_CAS: [(&str, &str); 3] = [
    ("officials", "Officials CA"),
    ("systems", "Systems CA"),
    ("seals", "Seals CA"),
];

/// Key algorithm of the HTTPS server key: TLS clients do not speak SM2, so
/// an SM2 hierarchy still serves HTTPS with a P-256 key.
pub fn tls_key_algorithm(ca: KeyAlgorithm) -> KeyAlgorithm {
    match ca {
        KeyAlgorithm::Sm2 => KeyAlgorithm::EcdsaP256,
        other => other,
    }
}

#[derive(Clone, Debug)]
pub struct HierarchySettings {
    pub key_algorithm: KeyAlgorithm,
    pub country: String,
    pub organization: String,
    /// Base URL of the plain-HTTP repository (AIA, CDP and OCSP point here).
    pub public_url: String,
    pub root_validity: Duration,
    pub issuing_validity: Duration,
    /// DNS names and IP addresses of the HTTPS server certificate.
    pub tls_names: Vec<String>,
    /// Permitted DNS subtrees for the `systems` CA; empty means unconstrained.
    pub systems_permitted_dns: Vec<String>,
    /// Prefix of every key label, unique per instance so that two instances
    /// can share a token without colliding.
    pub key_prefix: String,
}

#[derive(Clone, Debug)]
pub struct Hierarchy {
    pub root: SigningAuthority,
    pub issuing: Vec<SigningAuthority>,
    /// Server certificate, then `systems`, then the root.
    pub tls_chain: Vec<Certificate>,
    pub tls_key_label: String,
    pub tls_signature: SignatureAlgorithm,
}

pub async fn create_default_hierarchy(
    db: &Database,
    store: Arc<dyn KeyStore>,
    audit: &AuditLog,
    s: &HierarchySettings,
    requester: Requester<'_>,
) -> Result<Hierarchy, Error> {
    let issuer = Issuer::new(db.clone(), store.clone());
    let base = s.public_url.trim_end_matches('/');
    let start = SystemTime::now() - Duration::from_secs(3600);
    let signature = s.key_algorithm.default_signature();

    let root_label = format!("{}-ca-{ROOT}", s.key_prefix);
    let root_key = generate(&store, &root_label, s.key_algorithm).await?;
    let root_template = CertificateTemplate {
        subject: DistinguishedName::new()
            .country(&s.country)
            .organization(&s.organization)
            .common_name(format!("{} Root CA", s.organization))
            .to_name()?,
        not_before: start,
        not_after: start + s.root_validity,
        extensions: vec![
            basic_constraints(true, None)?,
            key_usage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)?,
            subject_key_identifier(&root_key)?,
        ],
        public_key: root_key,
    };
    let root_cert = issuer
        .issue(
            Signer::SelfSigned {
                ca_name: ROOT,
                key_label: &root_label,
                signature,
            },
            "root-ca",
            &root_template,
            requester,
        )
        .await?;
    let root = SigningAuthority {
        name: ROOT.into(),
        key_label: root_label,
        signature,
        certificate: root_cert,
    };
    record(db, audit, &root, None, s.key_algorithm, requester).await?;

    let root_key_id = key_identifier(&root.certificate.tbs_certificate.subject_public_key_info);
    let root_not_after = root_template.not_after;
    let mut issuing = Vec::new();
    for (name, cn) in ISSUING_CAS {
        let label = format!("{}-ca-{name}", s.key_prefix);
        let key = generate(&store, &label, s.key_algorithm).await?;
        let mut extensions = vec![
            basic_constraints(true, Some(0))?,
            key_usage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)?,
            subject_key_identifier(&key)?,
            authority_key_identifier(&root_key_id)?,
            authority_info_access(
                &format!("{base}/pki/ca/{ROOT}.crt"),
                Some(&format!("{base}/ocsp")),
            )?,
            crl_distribution_point(&format!("{base}/pki/crl/{ROOT}.crl"))?,
        ];
        if name == "systems" && !s.systems_permitted_dns.is_empty() {
            extensions.push(name_constraints_dns(&s.systems_permitted_dns)?);
        }
        let template = CertificateTemplate {
            subject: DistinguishedName::new()
                .country(&s.country)
                .organization(&s.organization)
                .common_name(format!("{} {cn}", s.organization))
                .to_name()?,
            public_key: key,
            not_before: start,
            not_after: (start + s.issuing_validity).min(root_not_after),
            extensions,
        };
        let cert = issuer
            .issue(Signer::Authority(&root), "issuing-ca", &template, requester)
            .await?;
        let ca = SigningAuthority {
            name: name.into(),
            key_label: label,
            signature,
            certificate: cert,
        };
        record(db, audit, &ca, Some(ROOT), s.key_algorithm, requester).await?;
        issuing.push(ca);
    }

    let systems = issuing
        .iter()
        .find(|c| c.name == "systems")
        .expect("systems CA was just created");
    let tls_alg = tls_key_algorithm(s.key_algorithm);
    let tls_label = format!("{}-tls-https", s.key_prefix);
    let tls_key = generate(&store, &tls_label, tls_alg).await?;
    let https = HttpsSubject {
        country: &s.country,
        organization: &s.organization,
        names: &s.tls_names,
        public_url: &s.public_url,
    };
    let tls_cert = issue_https_certificate(&issuer, systems, tls_key, &https, requester).await?;
    Ok(Hierarchy {
        tls_chain: vec![
            tls_cert,
            systems.certificate.clone(),
            root.certificate.clone(),
        ],
        root,
        issuing,
        tls_key_label: tls_label,
        tls_signature: tls_alg.default_signature(),
    })
}

/// What the HTTPS server certificate of an instance certifies.
#[derive(Clone, Copy, Debug)]
pub struct HttpsSubject<'a> {
    pub country: &'a str,
    pub organization: &'a str,
    /// DNS names and IP addresses; the first is also the common name.
    pub names: &'a [String],
    /// Base URL of the plain-HTTP repository (AIA, CDP and OCSP point here).
    pub public_url: &'a str,
}

/// Days an HTTPS server certificate is valid: the most browsers accept.
const HTTPS_VALIDITY_DAYS: u64 = 397;

/// Issues the HTTPS server certificate (serverAuth, 397 days) for the key
/// `public_key`, signed by `systems`; `kexin init` and its renewal while
/// serving both come here.
pub async fn issue_https_certificate(
    issuer: &Issuer,
    systems: &SigningAuthority,
    public_key: spki::SubjectPublicKeyInfoOwned,
    s: &HttpsSubject<'_>,
    requester: Requester<'_>,
) -> Result<Certificate, Error> {
    let base = s.public_url.trim_end_matches('/');
    let start = SystemTime::now() - Duration::from_secs(3600);
    let systems_key_id =
        key_identifier(&systems.certificate.tbs_certificate.subject_public_key_info);
    let usage = if KeyAlgorithm::from_spki(&public_key)?.is_rsa() {
        KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment
    } else {
        KeyUsages::DigitalSignature.into()
    };
    let common_name = s
        .names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let template = CertificateTemplate {
        subject: DistinguishedName::new()
            .country(s.country)
            .organization(s.organization)
            .common_name(common_name)
            .to_name()?,
        not_before: start,
        // Never past the CA's own end, which a certificate may not outlive.
        not_after: (start + Duration::from_secs(HTTPS_VALIDITY_DAYS * 86400)).min(
            SystemTime::UNIX_EPOCH
                + systems
                    .certificate
                    .tbs_certificate
                    .validity
                    .not_after
                    .to_unix_duration(),
        ),
        extensions: vec![
            basic_constraints(false, None)?,
            key_usage(usage)?,
            extended_key_usage(vec![OID_KP_SERVER_AUTH], false)?,
            subject_alt_name(s.names, false)?,
            subject_key_identifier(&public_key)?,
            authority_key_identifier(&systems_key_id)?,
            authority_info_access(
                &format!("{base}/pki/ca/systems.crt"),
                Some(&format!("{base}/ocsp")),
            )?,
            crl_distribution_point(&format!("{base}/pki/crl/systems.crl"))?,
        ],
        public_key,
    };
    issuer
        .issue(
            Signer::Authority(systems),
            "tls-server",
            &template,
            requester,
        )
        .await
}

async fn generate(
    store: &Arc<dyn KeyStore>,
    label: &str,
    alg: KeyAlgorithm,
) -> Result<spki::SubjectPublicKeyInfoOwned, Error> {
    let store = store.clone();
    let label = label.to_owned();
    let public = tokio::task::spawn_blocking(move || store.generate(&label, alg))
        .await
        .map_err(|e| Error::Crypto(format!("key generation task: {e}")))??;
    parse_spki(&public.spki_der)
}

async fn record(
    db: &Database,
    audit: &AuditLog,
    ca: &SigningAuthority,
    parent: Option<&str>,
    alg: KeyAlgorithm,
    requester: Requester<'_>,
) -> Result<(), Error> {
    db.insert_authority(&AuthorityRecord {
        name: ca.name.clone(),
        parent: parent.map(str::to_owned),
        key_label: ca.key_label.clone(),
        key_algorithm: alg.to_string(),
        signature_algorithm: ca.signature.to_string(),
        certificate: ca
            .certificate
            .to_der()
            .map_err(crate::certificate::der_err)?,
        created_at: now(),
    })
    .await?;
    audit
        .append(AuditEvent {
            actor: requester.actor,
            action: "ca.create",
            target: &ca.name,
            source: requester.source,
            detail: serde_json::json!({
                "parent": parent,
                "key_label": ca.key_label,
                "key_algorithm": alg.to_string(),
                "subject": ca.certificate.tbs_certificate.subject.to_string(),
            }),
        })
        .await?;
    Ok(())
}

/// Loads a CA from storage.
pub async fn load_authority(db: &Database, name: &str) -> Result<SigningAuthority, Error> {
    let rec = db
        .authority(name)
        .await?
        .ok_or_else(|| Error::UnknownAuthority(name.to_owned()))?;
    let key: KeyAlgorithm = rec.key_algorithm.parse()?;
    let signature = match rec.signature_algorithm.as_str() {
        "rsa-pss-sha256" => SignatureAlgorithm::RsaPssSha256,
        _ => key.default_signature(),
    };
    Ok(SigningAuthority {
        name: rec.name,
        key_label: rec.key_label,
        signature,
        certificate: Certificate::from_der(&rec.certificate)
            .map_err(crate::certificate::der_err)?,
    })
}

/// A CA certificate replaced by [`renew_authority`].
#[derive(Clone, Debug)]
pub struct RenewedAuthority {
    pub previous: Certificate,
    pub authority: SigningAuthority,
}

/// Re-certifies the CA `name` from now, with its name, key and extensions
/// unchanged: an issuing CA by its parent, never past the parent's end,
/// and the root by itself. What the CA issued before chains to the new
/// certificate as to the old one (same subject, same key identifier), and
/// its CRLs and OCSP answers keep verifying, so nothing is re-issued.
///
/// `lifetime` defaults to the previous certificate's. A renewal that would
/// not end later than the previous certificate is refused (its parent ends
/// first: renew the parent), as is one whose key is no longer in `store`,
/// or one that another renewal overtook.
pub async fn renew_authority(
    db: &Database,
    issuer: &Issuer,
    store: &Arc<dyn KeyStore>,
    audit: &AuditLog,
    name: &str,
    lifetime: Option<Duration>,
    requester: Requester<'_>,
) -> Result<RenewedAuthority, Error> {
    let record = db
        .authority(name)
        .await?
        .ok_or_else(|| Error::UnknownAuthority(name.to_owned()))?;
    let current = load_authority(db, name).await?;
    let tbs = &current.certificate.tbs_certificate;
    let key = tbs
        .subject_public_key_info
        .to_der()
        .map_err(crate::certificate::der_err)?;
    let label = current.key_label.clone();
    let in_store = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.public_key(&label))
            .await
            .map_err(|e| Error::Crypto(format!("key store task: {e}")))?
    };
    let found = match in_store {
        Ok(public) => public.spki_der == key,
        Err(kexin_hsm::Error::KeyNotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    if !found {
        return Err(Error::InvalidRequest(format!(
            "the key of CA {name} ({}) is not in the key store",
            current.key_label
        )));
    }
    let end_of = |validity: &x509_cert::time::Validity| {
        SystemTime::UNIX_EPOCH + validity.not_after.to_unix_duration()
    };
    let previous_end = end_of(&tbs.validity);
    let lifetime = lifetime.unwrap_or_else(|| {
        tbs.validity
            .not_after
            .to_unix_duration()
            .saturating_sub(tbs.validity.not_before.to_unix_duration())
    });
    let start = SystemTime::now() - Duration::from_secs(3600);
    let parent = match &record.parent {
        Some(parent) => Some(load_authority(db, parent).await?),
        None => None,
    };
    let parent_end = parent
        .as_ref()
        .map(|p| end_of(&p.certificate.tbs_certificate.validity));
    let not_after = match parent_end {
        Some(end) => (start + lifetime).min(end),
        None => start + lifetime,
    };
    if not_after <= previous_end {
        let cut_short_by_parent = parent_end.is_some_and(|end| start + lifetime > end);
        return Err(Error::InvalidRequest(format!(
            "a renewal of CA {name} would end no later than its certificate does{}",
            match (&record.parent, cut_short_by_parent) {
                (Some(p), true) => format!(" (CA {p} ends first: renew it first)"),
                _ => " (ask for a longer lifetime)".to_owned(),
            }
        )));
    }
    let template = CertificateTemplate {
        subject: tbs.subject.clone(),
        public_key: tbs.subject_public_key_info.clone(),
        not_before: start,
        not_after,
        extensions: tbs.extensions.clone().unwrap_or_default(),
    };
    let signer = match &parent {
        Some(p) => Signer::Authority(p),
        None => Signer::SelfSigned {
            ca_name: name,
            key_label: &current.key_label,
            signature: current.signature,
        },
    };
    let profile = if parent.is_some() {
        "issuing-ca"
    } else {
        "root-ca"
    };
    let renewed = issuer.issue(signer, profile, &template, requester).await?;
    let previous_der = current
        .certificate
        .to_der()
        .map_err(crate::certificate::der_err)?;
    let renewed_der = renewed.to_der().map_err(crate::certificate::der_err)?;
    if !db
        .replace_authority_certificate(name, &previous_der, &renewed_der)
        .await?
    {
        return Err(Error::Conflict(format!(
            "CA {name} was renewed by someone else meanwhile"
        )));
    }
    let serial = |c: &Certificate| hex::encode(c.tbs_certificate.serial_number.as_bytes());
    audit
        .append(AuditEvent {
            actor: requester.actor,
            action: "ca.renew",
            target: name,
            source: requester.source,
            detail: serde_json::json!({
                "serial": serial(&renewed),
                "not_after": renewed.tbs_certificate.validity.not_after.to_string(),
                "previous_serial": serial(&current.certificate),
                "previous_not_after": tbs.validity.not_after.to_string(),
            }),
        })
        .await?;
    Ok(RenewedAuthority {
        previous: current.certificate.clone(),
        authority: SigningAuthority {
            certificate: renewed,
            ..current
        },
    })
}

/// Issuer links from `leaf` up through `authorities` (by subject name),
/// issuing CA first.
pub fn chain_of(
    leaf: &x509_cert::Certificate,
    authorities: &[x509_cert::Certificate],
) -> Vec<x509_cert::Certificate> {
    let mut chain: Vec<x509_cert::Certificate> = Vec::new();
    let mut current = leaf.clone();
    while current.tbs_certificate.issuer != current.tbs_certificate.subject && chain.len() < 8 {
        match authorities
            .iter()
            .find(|a| a.tbs_certificate.subject == current.tbs_certificate.issuer)
        {
            Some(parent) => {
                chain.push(parent.clone());
                current = parent.clone();
            }
            None => break,
        }
    }
    chain
}
