//! The seal registry: which seals exist, whose they are, what they look
//! like, where their keys live, and whether they may be used now.
//!
//! A seal's key is generated in the key store and never leaves it; its
//! certificate comes from the `seal` profile of the `seals` CA. A seal is
//! usable when it is active and its certificate is issued (not revoked,
//! not on hold) and within its validity; revoking the certificate, which
//! takes two officers, revokes the seal.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use der::Decode;
use kexin_ca::audit::{AuditEvent, AuditLog};
use kexin_ca::certificate::parse_spki;
use kexin_ca::issuance::Requester;
use kexin_ca::profile::SubjectRequest;
use kexin_ca::registration::Registration;
use kexin_ca::request::{BoxFuture, SealFactory, SealSpec};
use kexin_ca::storage::{Database, SealRow};
use kexin_hsm::{KeyAlgorithm, KeyStore};
use x509_cert::Certificate;

use crate::Error;

/// The OID of organizationIdentifier (X.520), which carries the unified
/// social credit code.
const OID_ORGANIZATION_IDENTIFIER: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("2.5.4.97");

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SealKind {
    /// 公章
    Official,
    /// 合同专用章
    Contract,
    /// 证照专用章
    License,
    /// 财务专用章
    Finance,
    /// 发票专用章
    Invoice,
}

impl SealKind {
    pub const ALL: [SealKind; 5] = [
        Self::Official,
        Self::Contract,
        Self::License,
        Self::Finance,
        Self::Invoice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Official => "official",
            Self::Contract => "contract",
            Self::License => "license",
            Self::Finance => "finance",
            Self::Invoice => "invoice",
        }
    }

    pub fn chinese(self) -> &'static str {
        match self {
            Self::Official => "公章",
            Self::Contract => "合同专用章",
            Self::License => "证照专用章",
            Self::Finance => "财务专用章",
            Self::Invoice => "发票专用章",
        }
    }
}

impl fmt::Display for SealKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SealKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown seal type {s:?}; use one of {}",
                    Self::ALL.map(SealKind::as_str).join(", ")
                ))
            })
    }
}

/// A seal with its certificate and the certificate's stored status.
#[derive(Clone, Debug)]
pub struct Seal {
    pub row: SealRow,
    pub certificate: Certificate,
    pub certificate_status: String,
}

impl Seal {
    pub fn name(&self) -> &str {
        &self.row.name
    }

    /// Why the seal may not be applied now, if it may not.
    pub fn unusable_because(&self, now: u64) -> Option<String> {
        if self.row.status != "active" {
            return Some(self.row.status.clone());
        }
        if self.certificate_status != "issued" {
            return Some(format!("certificate {}", self.certificate_status));
        }
        let v = &self.certificate.tbs_certificate.validity;
        if now < v.not_before.to_unix_duration().as_secs()
            || now > v.not_after.to_unix_duration().as_secs()
        {
            return Some("outside its certificate's validity".into());
        }
        None
    }

    /// Whether the seal's certificate may be renewed: expiry is what
    /// renewal is for, but a seal suspended or revoked, or a certificate
    /// revoked or on hold, stays as it is.
    pub fn check_renewable(&self) -> Result<(), Error> {
        let why = if self.row.status != "active" {
            format!("the seal is {}", self.row.status)
        } else if self.certificate_status != "issued" {
            format!("its certificate is {}", self.certificate_status)
        } else {
            return Ok(());
        };
        Err(Error::Ca(kexin_ca::Error::Conflict(format!(
            "seal {:?} is not renewed: {why}",
            self.row.name
        ))))
    }
}

/// What a new seal is made of.
pub struct NewSeal<'a> {
    pub name: &'a str,
    pub organization: &'a str,
    pub uscc: Option<&'a str>,
    pub kind: SealKind,
    /// PNG; the default round seal when absent.
    pub image: Option<Vec<u8>>,
    pub algorithm: KeyAlgorithm,
}

#[derive(Clone, Debug)]
pub struct SealRegistry {
    db: Database,
    store: Arc<dyn KeyStore>,
    audit: AuditLog,
    registration: Registration,
    key_prefix: String,
}

impl SealRegistry {
    pub fn new(
        db: Database,
        store: Arc<dyn KeyStore>,
        audit: AuditLog,
        registration: Registration,
        key_prefix: String,
    ) -> Self {
        Self {
            db,
            store,
            audit,
            registration,
            key_prefix,
        }
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Whether `new` could be created now: valid fields and a free name.
    pub async fn check(&self, new: &NewSeal<'_>) -> Result<(), Error> {
        let name = new.name.trim();
        let organization = new.organization.trim();
        for (what, v) in [("seal name", name), ("organization", organization)] {
            if v.is_empty() || v.chars().count() > 64 || v.chars().any(char::is_control) {
                return Err(Error::InvalidInput(format!(
                    "the {what} is 1 to 64 printable characters"
                )));
            }
        }
        if let Some(code) = new.uscc {
            if !kexin_ca::profile::is_valid_uscc(code) {
                return Err(Error::InvalidInput(format!(
                    "{code:?} is not a valid unified social credit code"
                )));
            }
        }
        if let Some(png) = &new.image {
            crate::image::check_png(png)?;
        }
        if self.db.seal(name).await?.is_some() {
            return Err(Error::Ca(kexin_ca::Error::Conflict(format!(
                "a seal named {name:?} exists"
            ))));
        }
        Ok(())
    }

    pub async fn create(&self, new: NewSeal<'_>, requester: Requester<'_>) -> Result<Seal, Error> {
        self.check(&new).await?;
        let name = new.name.trim();
        let organization = new.organization.trim();
        let image = match new.image {
            Some(png) => png,
            None => crate::image::default_seal_png()?,
        };
        let mut id = [0u8; 6];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| Error::Encoding("no randomness".into()))?;
        let label = format!("{}-seal-{}", self.key_prefix, hex::encode(id));
        let (store, l, alg) = (self.store.clone(), label.clone(), new.algorithm);
        let public = tokio::task::spawn_blocking(move || store.generate(&l, alg))
            .await
            .map_err(|e| Error::Encoding(format!("key generation task: {e}")))??;
        let mut subject = vec![(const_oid::db::rfc4519::O, organization.to_owned())];
        if let Some(code) = new.uscc {
            subject.push((OID_ORGANIZATION_IDENTIFIER, code.to_owned()));
        }
        subject.push((const_oid::db::rfc4519::CN, name.to_owned()));
        let request = SubjectRequest {
            subject,
            names: vec![],
            public_key: parse_spki(&public.spki_der)?,
            key_algorithm: public.algorithm,
        };
        let cert = self
            .registration
            .issue(&request, "seal", None, requester)
            .await?;
        let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
        let row = SealRow {
            name: name.to_owned(),
            organization: organization.to_owned(),
            uscc: new.uscc.map(str::to_owned),
            kind: new.kind.as_str().to_owned(),
            image,
            key_label: label,
            certificate_serial: serial.clone(),
            status: "active".into(),
            created_at: now() as i64,
        };
        self.db.insert_seal(&row).await?;
        self.audit
            .append(AuditEvent {
                actor: requester.actor,
                action: "seal.create",
                target: name,
                source: requester.source,
                detail: serde_json::json!({
                    "organization": organization,
                    "uscc": new.uscc,
                    "kind": new.kind.as_str(),
                    "certificate": serial,
                    "key_label": row.key_label,
                    "algorithm": public.algorithm.as_str(),
                }),
            })
            .await?;
        self.get(name).await
    }

    pub async fn get(&self, name: &str) -> Result<Seal, Error> {
        let row = self
            .db
            .seal(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("seal {name:?}")))?;
        self.with_certificate(row).await
    }

    pub async fn by_certificate(&self, serial: &str) -> Result<Option<Seal>, Error> {
        match self.db.seal_by_certificate(serial).await? {
            Some(row) => Ok(Some(self.with_certificate(row).await?)),
            None => Ok(None),
        }
    }

    async fn with_certificate(&self, row: SealRow) -> Result<Seal, Error> {
        let record = self
            .db
            .certificate(&row.certificate_serial)
            .await?
            .ok_or_else(|| Error::NotFound(format!("certificate of seal {:?}", row.name)))?;
        let certificate = Certificate::from_der(record.der.as_deref().unwrap_or_default())
            .map_err(crate::der_err)?;
        Ok(Seal {
            row,
            certificate,
            certificate_status: record.status,
        })
    }

    /// Renews the certificate of the seal `name` for the key it has, from
    /// the `seal` profile: the seal goes on sealing past its certificate's
    /// end. The previous certificate stays valid, for what was sealed
    /// under it, and is kept as the seal's (its documents and licenses
    /// still name the seal); revoking either certificate revokes both
    /// ([`kexin_ca::revocation`]). Refused for a seal that is not active or
    /// whose certificate is revoked or on hold. Audited (`seal.renew`).
    pub async fn renew(&self, name: &str, requester: Requester<'_>) -> Result<Seal, Error> {
        let seal = self.get(name).await?;
        seal.check_renewable()?;
        let (store, label) = (self.store.clone(), seal.row.key_label.clone());
        let public = tokio::task::spawn_blocking(move || store.public_key(&label))
            .await
            .map_err(|e| Error::Encoding(format!("key store task: {e}")))??;
        let tbs = &seal.certificate.tbs_certificate;
        let public_key = parse_spki(&public.spki_der)?;
        if public_key != tbs.subject_public_key_info {
            return Err(Error::InvalidInput(format!(
                "the key of seal {name:?} in the key store is not its certificate's"
            )));
        }
        let request = SubjectRequest {
            subject: kexin_ca::csr::name_attributes(&tbs.subject).map_err(kexin_ca::Error::from)?,
            names: vec![],
            public_key,
            key_algorithm: public.algorithm,
        };
        let issuer = self
            .db
            .certificate(&seal.row.certificate_serial)
            .await?
            .map(|record| record.issuer);
        let cert = self
            .registration
            .issue(&request, "seal", issuer.as_deref(), requester)
            .await?;
        let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
        if !self
            .db
            .replace_seal_certificate(name, &seal.row.certificate_serial, &serial)
            .await?
        {
            return Err(Error::Ca(kexin_ca::Error::Conflict(format!(
                "seal {name:?} was renewed by someone else meanwhile"
            ))));
        }
        self.audit
            .append(AuditEvent {
                actor: requester.actor,
                action: "seal.renew",
                target: name,
                source: requester.source,
                detail: serde_json::json!({
                    "certificate": serial,
                    "previous_certificate": seal.row.certificate_serial,
                    "not_after": cert.tbs_certificate.validity.not_after.to_string(),
                }),
            })
            .await?;
        self.get(name).await
    }

    /// A seal that may be applied now, or why not.
    pub async fn usable(&self, name: &str) -> Result<Seal, Error> {
        let seal = self.get(name).await?;
        match seal.unusable_because(now()) {
            Some(why) => Err(Error::SealUnusable(name.to_owned(), why)),
            None => Ok(seal),
        }
    }

    /// Grants `principal` the use of seal `name`; audited.
    pub async fn grant(
        &self,
        name: &str,
        principal: &str,
        requester: Requester<'_>,
    ) -> Result<(), Error> {
        let principal = principal.trim();
        if principal.is_empty() || principal.chars().count() > 64 {
            return Err(Error::InvalidInput(
                "a principal name is 1 to 64 characters".into(),
            ));
        }
        self.get(name).await?;
        self.db.add_seal_user(name, principal).await?;
        self.audit
            .append(AuditEvent {
                actor: requester.actor,
                action: "seal.grant",
                target: name,
                source: requester.source,
                detail: serde_json::json!({ "principal": principal }),
            })
            .await?;
        Ok(())
    }

    /// Records one application of a seal (what was sealed, by whom).
    pub async fn record_use(
        &self,
        seal: &Seal,
        requester: Requester<'_>,
        detail: serde_json::Value,
    ) -> Result<(), Error> {
        self.audit
            .append(AuditEvent {
                actor: requester.actor,
                action: "seal.use",
                target: seal.name(),
                source: requester.source,
                detail,
            })
            .await?;
        Ok(())
    }
}

/// Approved `seal-create` requests become seals here, with the CA's key
/// algorithm unless the request names another.
#[derive(Clone, Debug)]
pub struct RequestedSeals {
    registry: SealRegistry,
    default_algorithm: KeyAlgorithm,
}

impl RequestedSeals {
    pub fn new(registry: SealRegistry, default_algorithm: KeyAlgorithm) -> Self {
        Self {
            registry,
            default_algorithm,
        }
    }

    fn new_seal<'a>(&self, spec: &'a SealSpec) -> Result<NewSeal<'a>, Error> {
        use base64::Engine;
        let image = spec
            .image
            .as_deref()
            .map(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| Error::InvalidInput("the seal image is not base64".into()))
            })
            .transpose()?;
        let algorithm = match &spec.algorithm {
            Some(a) => a.parse().map_err(|e: kexin_hsm::Error| {
                Error::InvalidInput(format!("key algorithm: {e}"))
            })?,
            None => self.default_algorithm,
        };
        Ok(NewSeal {
            name: &spec.name,
            organization: &spec.organization,
            uscc: spec
                .uscc
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty()),
            kind: spec.kind.parse()?,
            image,
            algorithm,
        })
    }
}

/// Seal errors as the registration workflow reports them.
fn ca_error(e: Error) -> kexin_ca::Error {
    match e {
        Error::Ca(e) => e,
        Error::KeyStore(e) => kexin_ca::Error::KeyStore(e),
        Error::InvalidInput(m) => kexin_ca::Error::InvalidRequest(m),
        Error::NotFound(m) => kexin_ca::Error::NotFound(m),
        Error::Forbidden(m) => kexin_ca::Error::Forbidden(m),
        other => kexin_ca::Error::Storage(other.to_string()),
    }
}

impl SealFactory for RequestedSeals {
    fn check<'a>(&'a self, spec: &'a SealSpec) -> BoxFuture<'a, Result<(), kexin_ca::Error>> {
        Box::pin(async move {
            let new = self.new_seal(spec).map_err(ca_error)?;
            self.registry.check(&new).await.map_err(ca_error)
        })
    }

    fn create<'a>(
        &'a self,
        spec: &'a SealSpec,
        requester: Requester<'a>,
    ) -> BoxFuture<'a, Result<String, kexin_ca::Error>> {
        Box::pin(async move {
            let new = self.new_seal(spec).map_err(ca_error)?;
            let seal = self
                .registry
                .create(new, requester)
                .await
                .map_err(ca_error)?;
            Ok(seal.row.certificate_serial)
        })
    }

    fn check_renewal<'a>(&'a self, serial: &'a str) -> BoxFuture<'a, Result<(), kexin_ca::Error>> {
        Box::pin(async move {
            self.current_seal(serial)
                .await?
                .check_renewable()
                .map_err(ca_error)
        })
    }

    fn renew<'a>(
        &'a self,
        serial: &'a str,
        requester: Requester<'a>,
    ) -> BoxFuture<'a, Result<String, kexin_ca::Error>> {
        Box::pin(async move {
            let seal = self.current_seal(serial).await?;
            let renewed = self
                .registry
                .renew(&seal.row.name, requester)
                .await
                .map_err(ca_error)?;
            Ok(renewed.row.certificate_serial)
        })
    }
}

impl RequestedSeals {
    /// The seal whose present certificate is `serial`: an earlier one is
    /// not renewed again.
    async fn current_seal(&self, serial: &str) -> Result<Seal, kexin_ca::Error> {
        match self
            .registry
            .by_certificate(serial)
            .await
            .map_err(ca_error)?
        {
            Some(seal) if seal.row.certificate_serial == serial => Ok(seal),
            Some(seal) => Err(kexin_ca::Error::Conflict(format!(
                "certificate {serial} was seal {:?}'s; renew its present certificate {}",
                seal.row.name, seal.row.certificate_serial
            ))),
            None => Err(kexin_ca::Error::NotFound(format!(
                "no seal has certificate {serial}"
            ))),
        }
    }
}

pub(crate) fn now() -> u64 {
    kexin_ca::issuance::now().max(0) as u64
}
