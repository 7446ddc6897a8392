//! The OCSP responder (RFC 6960, RFC 5019 profile).
//!
//! Each CA answers through a delegated responder certificate (profile
//! `ocsp-signer`, id-pkix-ocsp-nocheck) whose key sits in the key store.
//! Responses without a nonce are cached and reused until they are
//! `refresh` old, so a popular certificate costs one signature per
//! refresh period, not per request; a revocation drops the cached answer.
//! Whatever arrives, the answer is a well-formed OCSPResponse: garbage gets
//! `malformedRequest`, CAs we do not serve get `unauthorized`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use const_oid::ObjectIdentifier;
use der::asn1::{BitString, GeneralizedTime, OctetString};
use der::{Decode, Encode};
use kexin_hsm::{KeyAlgorithm, KeyStore, SignatureAlgorithm};
use x509_cert::ext::Extension;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    OcspResponseStatus, ResponderId, ResponseData, RevokedInfo, SingleResponse, Version,
};

use crate::certificate::{der_err, parse_spki, serial_hex};
use crate::issuance::{Issuer, Requester, Signer, SigningAuthority};
use crate::profile::{Profiles, RepositoryUrls, SubjectRequest};
use crate::revocation::RevocationReason;
use crate::storage::Database;
use crate::Error;

const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const OID_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.401");
const OID_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");

/// Largest request accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Most CertIDs answered in one request.
const MAX_CERT_IDS: usize = 16;

fn digest(alg: ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::digest as d;
    let lc = match alg {
        a if a == OID_SHA1 => &d::SHA1_FOR_LEGACY_USE_ONLY,
        a if a == OID_SHA256 => &d::SHA256,
        a if a == OID_SHA384 => &d::SHA384,
        a if a == OID_SHA512 => &d::SHA512,
        a if a == OID_SM3 => {
            use sm3::Digest;
            return Some(sm3::Sm3::digest(data).to_vec());
        }
        _ => return None,
    };
    Some(d::digest(lc, data).as_ref().to_vec())
}

/// A CA this responder answers for.
struct ServedCa {
    name: String,
    /// (hash algorithm, issuerNameHash, issuerKeyHash) for every CertID hash we accept.
    id_hashes: Vec<(ObjectIdentifier, Vec<u8>, Vec<u8>)>,
    /// Replaced when the responder certificate is renewed while serving.
    responder: RwLock<Arc<Responder>>,
}

/// The delegated responder that signs a CA's answers.
struct Responder {
    label: String,
    signature: SignatureAlgorithm,
    /// DER, to tell a renewed certificate in storage from this one.
    der: Vec<u8>,
    cert: Certificate,
    key_hash: Vec<u8>,
}

impl Responder {
    fn new(label: String, der: Vec<u8>) -> Result<Self, Error> {
        let cert = Certificate::from_der(&der).map_err(der_err)?;
        let spki = &cert.tbs_certificate.subject_public_key_info;
        Ok(Self {
            label,
            signature: KeyAlgorithm::from_spki(spki)?.default_signature(),
            key_hash: digest(OID_SHA1, spki.subject_public_key.raw_bytes()).unwrap_or_default(),
            der,
            cert,
        })
    }
}

/// What the HTTP layer needs to send an answer.
#[derive(Clone, Debug)]
pub struct OcspAnswer {
    /// Shared, not copied, between the cache and every reply.
    pub der: bytes::Bytes,
    /// Seconds since the epoch; `None` for error responses.
    pub this_update: Option<i64>,
    pub next_update: Option<i64>,
    /// A strong HTTP validator of a signed response (the first 16 bytes of
    /// its SHA-256), computed once when it is signed.
    pub etag: Option<[u8; 16]>,
}

#[derive(Clone)]
struct Cached {
    answer: OcspAnswer,
    signed_at: SystemTime,
    /// The stored status the answer was made from; a different status now
    /// (a revocation by another process or node) means the answer is stale.
    status: StoredStatus,
    /// When `status` was last compared with storage.
    checked_at: std::time::Instant,
}

/// How long a cached answer is served without asking storage again.
/// Revocations made through this process drop the answer at once
/// ([`OcspResponder::invalidate`]); ones made by another process or node
/// are seen within this time.
const RECHECK: Duration = Duration::from_secs(2);

/// Bound of [`OcspResponder::known_requests`]; it starts over when full.
const MAX_KNOWN_REQUESTS: usize = 100_000;

/// The CA (by index), the serial in hex and the CertID hash algorithm.
type CacheKey = (usize, String, ObjectIdentifier);

/// The stored status of a certificate and its revocation time.
type StoredStatus = Option<(String, Option<i64>)>;

/// What the cache holds for a request.
enum Lookup {
    Current(OcspAnswer),
    /// No answer, or a stale one; carries the stored status if it was read.
    Stale(Option<StoredStatus>),
}

pub struct OcspResponder {
    db: Database,
    store: Arc<dyn KeyStore>,
    cas: Vec<ServedCa>,
    cache: Mutex<HashMap<CacheKey, Cached>>,
    /// Which cache entry a nonce-less request, byte for byte, asks for:
    /// relying parties repeat the same request, and this skips its parse.
    known_requests: Mutex<HashMap<Box<[u8]>, CacheKey>>,
    /// nextUpdate - thisUpdate of every response.
    pub validity: Duration,
    /// How long a signed response is reused before it is signed afresh.
    pub refresh: Duration,
}

impl std::fmt::Debug for OcspResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspResponder")
            .field("cas", &self.cas.iter().map(|c| &c.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Creates missing delegated responder certificates and renews those due
/// ([`crate::renewal::due`]). `key_prefix` names new responder keys.
/// Returns the CAs whose responder certificate was issued.
pub async fn ensure_responders(
    db: &Database,
    issuer: &Issuer,
    store: &Arc<dyn KeyStore>,
    profiles: &Profiles,
    urls: &RepositoryUrls,
    key_prefix: &str,
    requester: Requester<'_>,
) -> Result<Vec<String>, Error> {
    let mut issued = Vec::new();
    let existing: HashMap<String, (String, Vec<u8>)> = db
        .ocsp_responders()
        .await?
        .into_iter()
        .map(|(ca, label, cert)| (ca, (label, cert)))
        .collect();
    let profile = profiles.get("ocsp-signer")?;
    for rec in db.authorities().await? {
        let ca = crate::hierarchy::load_authority(db, &rec.name).await?;
        let label = match existing.get(&ca.name) {
            Some((label, cert)) => {
                let cert = Certificate::from_der(cert).map_err(der_err)?;
                let issuer = &ca.certificate.tbs_certificate.validity;
                let due = |cert: &Certificate| {
                    crate::renewal::due(&cert.tbs_certificate.validity, issuer, SystemTime::now())
                };
                if !due(&cert) {
                    continue;
                }
                let name = format!("ocsp-responder:{}", ca.name);
                if !crate::renewal::claim(db, &name).await? {
                    continue;
                }
                let latest = db.ocsp_responders().await?;
                let stored = latest.iter().find(|(name, _, _)| *name == ca.name);
                if let Some((_, _, der)) = stored {
                    if !due(&Certificate::from_der(der).map_err(der_err)?) {
                        continue;
                    }
                }
                label.clone()
            }
            None => {
                let label = format!("{key_prefix}-ocsp-{}", ca.name);
                let key_alg: KeyAlgorithm = rec.key_algorithm.parse()?;
                let store = store.clone();
                let l = label.clone();
                tokio::task::spawn_blocking(move || store.generate(&l, key_alg))
                    .await
                    .map_err(|e| Error::Crypto(e.to_string()))??;
                label
            }
        };
        let public = {
            let store = store.clone();
            let l = label.clone();
            tokio::task::spawn_blocking(move || store.public_key(&l))
                .await
                .map_err(|e| Error::Crypto(e.to_string()))??
        };
        let org = ca.certificate.tbs_certificate.subject.to_string();
        let request = SubjectRequest {
            subject: vec![(
                const_oid::db::rfc4519::CN,
                format!("OCSP Responder for {}", ca.name),
            )],
            names: vec![],
            public_key: parse_spki(&public.spki_der)?,
            key_algorithm: public.algorithm,
        };
        let template = profile.template(&request, &ca, urls, SystemTime::now())?;
        let cert = issuer
            .issue(Signer::Authority(&ca), "ocsp-signer", &template, requester)
            .await?;
        db.insert_ocsp_responder(&ca.name, &label, &cert.to_der().map_err(der_err)?)
            .await?;
        tracing::info!(ca = %ca.name, issuer_subject = %org, "OCSP responder certificate issued");
        issued.push(ca.name.clone());
    }
    Ok(issued)
}

impl OcspResponder {
    /// Loads every CA and its responder.
    pub async fn load(db: Database, store: Arc<dyn KeyStore>) -> Result<Self, Error> {
        let mut responders: HashMap<String, (String, Vec<u8>)> = db
            .ocsp_responders()
            .await?
            .into_iter()
            .map(|(ca, label, cert)| (ca, (label, cert)))
            .collect();
        let mut cas = Vec::new();
        for rec in db.authorities().await? {
            let ca: SigningAuthority = crate::hierarchy::load_authority(&db, &rec.name).await?;
            let Some((label, cert)) = responders.remove(&ca.name) else {
                tracing::warn!(ca = %ca.name, "no OCSP responder certificate; OCSP requests for it get unauthorized");
                continue;
            };
            let tbs = &ca.certificate.tbs_certificate;
            let subject_der = tbs.subject.to_der().map_err(der_err)?;
            let key_bits = tbs.subject_public_key_info.subject_public_key.raw_bytes();
            let id_hashes = [OID_SHA1, OID_SHA256, OID_SHA384, OID_SHA512, OID_SM3]
                .into_iter()
                .filter_map(|alg| Some((alg, digest(alg, &subject_der)?, digest(alg, key_bits)?)))
                .collect();
            cas.push(ServedCa {
                name: ca.name.clone(),
                id_hashes,
                responder: RwLock::new(Arc::new(Responder::new(label, cert)?)),
            });
        }
        Ok(Self {
            db,
            store,
            cas,
            cache: Mutex::default(),
            known_requests: Mutex::default(),
            validity: Duration::from_secs(4 * 3600),
            refresh: Duration::from_secs(3600),
        })
    }

    /// Takes up responder certificates renewed in storage (by this process
    /// or another node) and forgets the answers the old ones signed, which
    /// carry the old certificate. Returns the CAs whose responder changed.
    pub async fn reload_responders(&self) -> Result<Vec<String>, Error> {
        let mut changed = Vec::new();
        for (ca_name, label, der) in self.db.ocsp_responders().await? {
            let Some(index) = self.cas.iter().position(|c| c.name == ca_name) else {
                continue;
            };
            let served = &self.cas[index];
            if self.responder(index).der == der {
                continue;
            }
            let renewed = Arc::new(Responder::new(label, der)?);
            *served
                .responder
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = renewed;
            self.cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|(i, _, _), _| *i != index);
            changed.push(ca_name);
        }
        Ok(changed)
    }

    /// Each CA served and the validity of the responder certificate that
    /// signs its answers now.
    pub fn responder_validities(&self) -> Vec<(String, x509_cert::time::Validity)> {
        (0..self.cas.len())
            .map(|i| {
                (
                    self.cas[i].name.clone(),
                    self.responder(i).cert.tbs_certificate.validity,
                )
            })
            .collect()
    }

    fn responder(&self, ca_index: usize) -> Arc<Responder> {
        self.cas[ca_index]
            .responder
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Forgets cached answers about `serial` (after a revocation or release).
    pub fn invalidate(&self, serial: &str) {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(_, s, _), _| s != serial);
    }

    /// Answers a DER OCSPRequest. Never fails: problems become OCSP error statuses.
    pub async fn respond(&self, request: &[u8]) -> OcspAnswer {
        match self.try_respond(request).await {
            Ok(answer) => answer,
            Err(status) => error_answer(status),
        }
    }

    async fn try_respond(&self, request: &[u8]) -> Result<OcspAnswer, OcspResponseStatus> {
        let known = self
            .known_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(request)
            .cloned();
        if let Some(key) = known {
            if let Lookup::Current(answer) = self.lookup(&key).await? {
                return Ok(answer);
            }
        }
        let (req, nonce) = parse_request(request)?;
        let list = &req.tbs_request.request_list;
        let mut ca_index = None;
        for r in list.iter() {
            let i = self
                .find_ca(&r.req_cert)
                .ok_or(OcspResponseStatus::Unauthorized)?;
            if *ca_index.get_or_insert(i) != i {
                // One response is signed by one responder: one CA per request.
                return Err(OcspResponseStatus::Unauthorized);
            }
        }
        let ca_index = ca_index.ok_or(OcspResponseStatus::MalformedRequest)?;
        let cache_key = (nonce.is_none() && list.len() == 1).then(|| {
            let id = &list[0].req_cert;
            (
                ca_index,
                serial_hex(&id.serial_number),
                id.hash_algorithm.oid,
            )
        });
        let mut current_status = None;
        if let Some(key) = &cache_key {
            self.remember_request(request, key);
            match self.lookup(key).await? {
                Lookup::Current(answer) => return Ok(answer),
                Lookup::Stale(status) => current_status = status,
            }
        }
        // Read before signing: a revocation racing with this request then
        // makes the cached answer look stale rather than look current.
        if let Some(key) = &cache_key {
            if current_status.is_none() {
                current_status = Some(
                    self.stored_status(&key.1)
                        .await
                        .map_err(|_| OcspResponseStatus::TryLater)?,
                );
            }
        }
        let answer = self
            .sign_response(ca_index, list.iter().map(|r| &r.req_cert), nonce)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "OCSP response failed");
                OcspResponseStatus::InternalError
            })?;
        if let (Some(key), Some(status)) = (cache_key, current_status) {
            self.cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(
                    key,
                    Cached {
                        answer: answer.clone(),
                        signed_at: SystemTime::now(),
                        status,
                        checked_at: std::time::Instant::now(),
                    },
                );
        }
        Ok(answer)
    }

    fn remember_request(&self, request: &[u8], key: &CacheKey) {
        let mut known = self
            .known_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= MAX_KNOWN_REQUESTS {
            known.clear();
        }
        known.insert(request.into(), key.clone());
    }

    /// The cached answer for `key` while it is current: signed less than
    /// `refresh` ago from the status storage still holds (asked at most
    /// every [`RECHECK`]).
    async fn lookup(&self, key: &CacheKey) -> Result<Lookup, OcspResponseStatus> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned();
        let Some(c) =
            cached.filter(|c| c.signed_at.elapsed().unwrap_or(Duration::MAX) < self.refresh)
        else {
            return Ok(Lookup::Stale(None));
        };
        if c.checked_at.elapsed() < RECHECK {
            return Ok(Lookup::Current(c.answer));
        }
        let status = self.stored_status(&key.1).await.map_err(|e| {
            tracing::error!(error = %e, "OCSP status lookup failed");
            OcspResponseStatus::TryLater
        })?;
        if status != c.status {
            return Ok(Lookup::Stale(Some(status)));
        }
        if let Some(entry) = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(key)
        {
            entry.checked_at = std::time::Instant::now();
        }
        Ok(Lookup::Current(c.answer))
    }

    async fn stored_status(&self, serial: &str) -> Result<StoredStatus, Error> {
        Ok(self
            .db
            .certificate(serial)
            .await?
            .map(|c| (c.status, c.revoked_at)))
    }

    fn find_ca(&self, id: &CertId) -> Option<usize> {
        let alg = id.hash_algorithm.oid;
        self.cas.iter().position(|ca| {
            ca.id_hashes.iter().any(|(a, name, key)| {
                *a == alg
                    && name.as_slice() == id.issuer_name_hash.as_bytes()
                    && key.as_slice() == id.issuer_key_hash.as_bytes()
            })
        })
    }

    async fn sign_response(
        &self,
        ca_index: usize,
        ids: impl Iterator<Item = &CertId>,
        nonce: Option<Extension>,
    ) -> Result<OcspAnswer, Error> {
        let ca = &self.cas[ca_index];
        let responder = self.responder(ca_index);
        let now_t = SystemTime::now();
        let this_update = generalized(now_t)?;
        let next = now_t + self.validity;
        let mut responses = Vec::new();
        for id in ids {
            let serial = serial_hex(&id.serial_number);
            let status = match self.db.certificate(&serial).await? {
                Some(c) if c.issuer == ca.name => match c.status.as_str() {
                    "issued" => CertStatus::good(),
                    "revoked" | "hold" => CertStatus::revoked(RevokedInfo {
                        revocation_time: generalized(
                            SystemTime::UNIX_EPOCH
                                + Duration::from_secs(c.revoked_at.unwrap_or(0).max(0) as u64),
                        )?,
                        revocation_reason: c
                            .revocation_reason
                            .and_then(RevocationReason::from_code)
                            .map(RevocationReason::crl_reason),
                    }),
                    _ => CertStatus::unknown(),
                },
                _ => CertStatus::unknown(),
            };
            responses.push(SingleResponse {
                cert_id: id.clone(),
                cert_status: status,
                this_update,
                next_update: Some(generalized(next)?),
                single_extensions: None,
            });
        }
        let data = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(
                OctetString::new(responder.key_hash.clone()).map_err(der_err)?,
            ),
            produced_at: this_update,
            responses,
            response_extensions: nonce.map(|n| vec![n]),
        };
        let tbs = data.to_der().map_err(der_err)?;
        let alg = responder.signature;
        let signature = kexin_hsm::sign_async(&self.store, &responder.label, alg, tbs).await?;
        let basic = BasicOcspResponse {
            tbs_response_data: data,
            signature_algorithm: alg.algorithm_identifier(),
            signature: BitString::from_bytes(&signature).map_err(der_err)?,
            certs: Some(vec![responder.cert.clone()]),
        };
        let der = OcspResponse::successful(basic)
            .and_then(|r| r.to_der())
            .map_err(der_err)?;
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        };
        let mut etag = [0u8; 16];
        etag.copy_from_slice(
            &aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der).as_ref()[..16],
        );
        Ok(OcspAnswer {
            der: der.into(),
            this_update: Some(secs(now_t)),
            next_update: Some(secs(next)),
            etag: Some(etag),
        })
    }
}

/// Parses and bounds-checks a DER OCSPRequest; everything before the
/// database is consulted. Returns the request and its nonce extension.
/// A DER OCSP request (SHA-256 CertID, no nonce) for `cert` issued by
/// `issuer`: what Kexin asks its own responder when it embeds or shows an
/// answer.
pub fn request_for(cert: &Certificate, issuer: &Certificate) -> Result<Vec<u8>, Error> {
    use der::asn1::Null;
    let sha256 = |b: &[u8]| digest(OID_SHA256, b).unwrap_or_default();
    let name_hash = sha256(&issuer.tbs_certificate.subject.to_der().map_err(der_err)?);
    let key_hash = sha256(
        issuer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes(),
    );
    x509_ocsp::OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: x509_ocsp::CertId {
                    hash_algorithm: spki::AlgorithmIdentifierOwned {
                        oid: OID_SHA256,
                        parameters: Some(Null.into()),
                    },
                    issuer_name_hash: OctetString::new(name_hash).map_err(der_err)?,
                    issuer_key_hash: OctetString::new(key_hash).map_err(der_err)?,
                    serial_number: cert.tbs_certificate.serial_number.clone(),
                },
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(der_err)
}

pub fn parse_request(
    request: &[u8],
) -> Result<(OcspRequest, Option<Extension>), OcspResponseStatus> {
    if request.len() > MAX_REQUEST_BYTES {
        return Err(OcspResponseStatus::MalformedRequest);
    }
    let req = OcspRequest::from_der(request).map_err(|_| OcspResponseStatus::MalformedRequest)?;
    let list = &req.tbs_request.request_list;
    if list.is_empty() || list.len() > MAX_CERT_IDS {
        return Err(OcspResponseStatus::MalformedRequest);
    }
    let nonce = match &req.tbs_request.request_extensions {
        Some(exts) => exts.iter().find(|e| e.extn_id == OID_NONCE).cloned(),
        None => None,
    };
    // RFC 8954 bounds nonces to 32 octets; allow the DER wrapping and some slack.
    if nonce
        .as_ref()
        .is_some_and(|n| n.extn_value.as_bytes().len() > 130)
    {
        return Err(OcspResponseStatus::MalformedRequest);
    }
    Ok((req, nonce))
}

fn generalized(t: SystemTime) -> Result<OcspGeneralizedTime, Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(OcspGeneralizedTime(
        GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).map_err(der_err)?,
    ))
}

fn error_answer(status: OcspResponseStatus) -> OcspAnswer {
    let der = OcspResponse {
        response_status: status,
        response_bytes: None,
    }
    .to_der()
    .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, 0x02]);
    OcspAnswer {
        der: der.into(),
        this_update: None,
        next_update: None,
        etag: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_are_well_formed() {
        for s in [
            OcspResponseStatus::MalformedRequest,
            OcspResponseStatus::Unauthorized,
            OcspResponseStatus::InternalError,
        ] {
            let a = error_answer(s);
            let parsed = OcspResponse::from_der(&a.der).unwrap();
            assert_eq!(parsed.response_status, s);
            assert!(parsed.response_bytes.is_none());
        }
    }

    #[test]
    fn sm3_digest_matches_the_standard_vector() {
        // GB/T 32905-2016 example 1: SM3("abc").
        assert_eq!(
            hex::encode(digest(OID_SM3, b"abc").unwrap()),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }
}
