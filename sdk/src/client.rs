//! For the official's side: sign in by signed challenge, where TLS client
//! authentication cannot reach Kexin end to end, with the key and
//! certificate of a PKCS#12 file (a soft certificate) or of a PKCS#11 token
//! (a USB key, through its vendor's module, or OpenSC's); and trust helpers
//! for any system — a time-stamp for some data, a seal on a PDF, a
//! verification report for a signed artifact, a license or a certificate.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cms::signed_data::SignedData;
use der::asn1::{Int, OctetString};
use der::{Decode, Encode};
use x509_cert::spki::AlgorithmIdentifier;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use crate::Error;

/// A certificate and its key, able to answer a sign-in challenge.
pub trait ChallengeSigner {
    /// The signer's certificate, PEM.
    fn certificate_pem(&self) -> &str;
    /// A signature over `message` with the key's default scheme (DER for
    /// ECDSA), as Kexin verifies it.
    fn sign_challenge(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
}

/// An official's signing identity from a PKCS#12 file.
pub struct Pkcs12Identity {
    certificate_pem: String,
    key: aws_lc_rs::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    key_pkcs8: Vec<u8>,
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl Pkcs12Identity {
    /// Reads a PKCS#12 (P-256 key, as `kexin officer add` makes).
    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<Self, Error> {
        let bad = |m: &str| Error::Refused(format!("PKCS#12: {m}"));
        let store =
            p12_keystore::KeyStore::from_pkcs12(der, password).map_err(|e| bad(&e.to_string()))?;
        let (_, chain) = store.private_key_chain().ok_or_else(|| bad("no key"))?;
        let cert = chain.chain().first().ok_or_else(|| bad("no certificate"))?;
        let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            chain.key(),
        )
        .map_err(|_| bad("only P-256 keys are supported here"))?;
        Ok(Self {
            certificate_pem: pem("CERTIFICATE", cert.as_der()),
            key,
            cert_der: cert.as_der().to_vec(),
            key_pkcs8: chain.key().to_vec(),
        })
    }

    /// The identity for TLS client authentication (Kexin's API).
    pub fn tls_identity(&self) -> Result<reqwest::Identity, Error> {
        let both = format!(
            "{}{}",
            pem("PRIVATE KEY", &self.key_pkcs8),
            pem("CERTIFICATE", &self.cert_der)
        );
        Ok(reqwest::Identity::from_pem(both.as_bytes())?)
    }
}

impl ChallengeSigner for Pkcs12Identity {
    fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    fn sign_challenge(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| Error::Refused("signing failed".into()))
    }
}

/// An official's key and certificate on a PKCS#11 token (a USB key): the
/// key signs on the token and never leaves it; the certificate is read
/// from the token, stored under the same label as the key.
pub struct Pkcs11Identity {
    store: kexin_hsm::Pkcs11KeyStore,
    label: String,
    algorithm: kexin_hsm::SignatureAlgorithm,
    certificate_pem: String,
}

impl Pkcs11Identity {
    /// Logs in to the token labelled `token_label` in `module` with `pin`
    /// and finds the key and certificate labelled `label`.
    pub fn open(
        module: &std::path::Path,
        token_label: &str,
        pin: &str,
        label: &str,
    ) -> Result<Self, Error> {
        let token = |e: kexin_hsm::Error| Error::Refused(format!("PKCS#11 token: {e}"));
        let store = kexin_hsm::Pkcs11KeyStore::open(&kexin_hsm::Pkcs11Settings {
            module: module.to_owned(),
            token_label: token_label.to_owned(),
            pin: kexin_hsm::Zeroizing::new(pin.to_owned()),
            max_sessions: 1,
        })
        .map_err(token)?;
        let certificate = store.certificate(label).map_err(token)?.ok_or_else(|| {
            Error::Refused(format!("PKCS#11 token: no certificate labelled {label:?}"))
        })?;
        let parsed = <x509_cert::Certificate as der::Decode>::from_der(&certificate)
            .map_err(|e| Error::Refused(format!("PKCS#11 token: unreadable certificate: {e}")))?;
        let algorithm =
            kexin_hsm::KeyAlgorithm::from_spki(&parsed.tbs_certificate.subject_public_key_info)
                .map_err(token)?
                .default_signature();
        Ok(Self {
            store,
            label: label.to_owned(),
            algorithm,
            certificate_pem: pem("CERTIFICATE", &certificate),
        })
    }
}

impl ChallengeSigner for Pkcs11Identity {
    fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Signs on the token; this blocks for as long as the token takes (a
    /// USB key: tens of milliseconds), once per sign-in.
    fn sign_challenge(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        use kexin_hsm::KeyStore;
        self.store
            .sign(&self.label, self.algorithm, message)
            .map_err(|e| Error::Refused(format!("PKCS#11 token: {e}")))
    }
}

/// A signed-in session at the provider (its cookie is in `http`): follow an
/// authorization URL with it to get a code without a client certificate.
pub struct ProviderSession {
    pub http: reqwest::Client,
    pub name: Option<String>,
    /// From [`challenge_authorize`]: the authorization request's redirect
    /// URI with its code (or with the error that kept it from one), where
    /// the user agent goes next.
    pub location: Option<String>,
}

/// Signs in to Kexin by signed challenge for `client_id`.
pub async fn challenge_login(
    issuer: &str,
    client_id: &str,
    identity: &impl ChallengeSigner,
    root_pem: Option<&[u8]>,
) -> Result<ProviderSession, Error> {
    sign_in(issuer, client_id, identity, root_pem, None).await
}

/// Signs in by signed challenge and continues `authorization_url` (an
/// `/oidc/authorize` URL, as [`crate::RelyingParty::login`] builds) in the
/// same answer: the session's `location` is the client's redirect URI with
/// its code, one request sooner than following the URL after
/// [`challenge_login`].
pub async fn challenge_authorize(
    issuer: &str,
    authorization_url: &str,
    identity: &impl ChallengeSigner,
    root_pem: Option<&[u8]>,
) -> Result<ProviderSession, Error> {
    let url = reqwest::Url::parse(authorization_url)
        .map_err(|e| Error::Refused(format!("authorization URL: {e}")))?;
    let authorization: serde_json::Map<String, serde_json::Value> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned().into()))
        .collect();
    let client_id = authorization
        .get("client_id")
        .and_then(|c| c.as_str())
        .ok_or_else(|| Error::Refused("the authorization URL names no client_id".into()))?
        .to_owned();
    let session = sign_in(issuer, &client_id, identity, root_pem, Some(authorization)).await?;
    if session.location.is_none() {
        return Err(Error::Refused(
            "the provider did not continue the authorization".into(),
        ));
    }
    Ok(session)
}

async fn sign_in(
    issuer: &str,
    client_id: &str,
    identity: &impl ChallengeSigner,
    root_pem: Option<&[u8]>,
    authorization: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<ProviderSession, Error> {
    // HTTP/1.1: a sign-in is a few requests one after another on a new
    // connection, where HTTP/2 multiplexes nothing and its connection
    // set-up and teardown frames cost both sides; measured with
    // bench/sso.sh, ~17% of the server's CPU per sign-in.
    let mut builder = reqwest::Client::builder()
        .http1_only()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(root) = root_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(root)?);
    }
    let http = builder.build()?;
    let issuer = issuer.trim_end_matches('/');
    let challenge: serde_json::Value = http
        .post(format!("{issuer}/oidc/challenge"))
        .form(&[("client_id", client_id)])
        .send()
        .await?
        .json()
        .await?;
    let nonce = challenge["nonce"]
        .as_str()
        .ok_or_else(|| Error::Refused(challenge.to_string()))?;
    let message = format!("kexin-sso-challenge\n{nonce}\n{client_id}");
    let signature = identity.sign_challenge(message.as_bytes())?;
    let mut body = serde_json::json!({
        "challenge_id": challenge["challenge_id"],
        "certificate": identity.certificate_pem(),
        "signature": STANDARD.encode(&signature),
    });
    if let Some(a) = authorization {
        body["authorization"] = a.into();
    }
    let answer: serde_json::Value = http
        .post(format!("{issuer}/oidc/challenge/answer"))
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    if answer["signed_in"] != true {
        return Err(Error::Refused(
            answer["error_description"]
                .as_str()
                .unwrap_or("refused")
                .to_owned(),
        ));
    }
    Ok(ProviderSession {
        http,
        name: answer["name"].as_str().map(str::to_owned),
        location: answer["location"].as_str().map(str::to_owned),
    })
}

/// An RFC 3161 time-stamp of `data` from Kexin's TSA
/// (`{http_base}/tsa`): the reply (TimeStampResp, DER), once it grants a
/// token that stamps `data`'s SHA-256 and echoes this request's fresh
/// random nonce, so that a rejection is an error and a token replayed
/// from another request is refused. The token's signature and its chain to
/// Kexin's root are not checked here: `kexin verify REPLY --content FILE`
/// or `openssl ts -verify` does that.
pub async fn timestamp(http_base: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::Refused("no system randomness".into()))?;
    // A positive INTEGER in its minimal encoding: no leading zero or sign bit.
    nonce[0] = (nonce[0] & 0x7f) | 0x01;
    let request = time_stamp_request(digest.as_ref(), &nonce)?;
    let reply = reqwest::Client::new()
        .post(format!("{}/tsa", http_base.trim_end_matches('/')))
        .header("content-type", "application/timestamp-query")
        .body(request.to_der().map_err(malformed_reply)?)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    check_time_stamp_reply(&reply, &request)?;
    Ok(reply.to_vec())
}

/// id-ct-TSTInfo (RFC 3161 §2.4.2).
const ID_CT_TST_INFO: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");

fn malformed_reply(e: impl std::fmt::Display) -> Error {
    Error::InvalidToken(format!("not a time-stamp reply: {e}"))
}

fn time_stamp_request(digest: &[u8], nonce: &[u8]) -> Result<TimeStampReq, Error> {
    Ok(TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifier {
                oid: const_oid::db::rfc5912::ID_SHA_256,
                parameters: None,
            },
            hashed_message: OctetString::new(digest).map_err(malformed_reply)?,
        },
        req_policy: None,
        nonce: Some(Int::new(nonce).map_err(malformed_reply)?),
        cert_req: true,
        extensions: None,
    })
}

/// That `reply` grants a token for `request`: its imprint and its nonce.
fn check_time_stamp_reply(reply: &[u8], request: &TimeStampReq) -> Result<(), Error> {
    let reply = TimeStampResp::from_der(reply).map_err(malformed_reply)?;
    // PKIStatus: granted (0) or grantedWithMods (1).
    let status = reply.status.status as u8;
    let token = match reply.time_stamp_token {
        Some(token) if status <= 1 => token,
        _ => {
            return Err(Error::Refused(format!(
                "the time-stamp authority answered {:?}, failure {:?}",
                reply.status.status, reply.status.fail_info
            )))
        }
    };
    let signed: SignedData = token.content.decode_as().map_err(malformed_reply)?;
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(malformed_reply("the token holds no TSTInfo"));
    }
    let content = signed
        .encap_content_info
        .econtent
        .ok_or_else(|| malformed_reply("the token holds no TSTInfo"))?;
    let info = TstInfo::from_der(
        content
            .decode_as::<OctetString>()
            .map_err(malformed_reply)?
            .as_bytes(),
    )
    .map_err(malformed_reply)?;
    let asked = &request.message_imprint;
    if info.message_imprint.hash_algorithm.oid != asked.hash_algorithm.oid
        || info.message_imprint.hashed_message != asked.hashed_message
    {
        return Err(Error::InvalidToken(
            "the time-stamp is for other data".into(),
        ));
    }
    if info.nonce != request.nonce {
        return Err(Error::InvalidToken(
            "the time-stamp answers another request (its nonce differs)".into(),
        ));
    }
    Ok(())
}

/// Kexin's seal and verification services, called over mutual TLS as the
/// officer or system whose PKCS#12 identity this is; what it may do is
/// what its role and its seal grants allow.
pub struct TrustServices {
    http: reqwest::Client,
    api: String,
}

impl TrustServices {
    /// `issuer`: Kexin's HTTPS base URL; `root_pem`: Kexin's root.
    ///
    /// HTTP/1.1: these calls carry whole documents one after another,
    /// which HTTP/2's framing and flow control only slow down (sealing a
    /// 1 MB PDF through `bench/seal.sh`'s setup: 3.9-4.3 ms of server CPU
    /// a document over HTTP/1.1, 4.7-5.1 over HTTP/2).
    pub fn new(issuer: &str, identity: &Pkcs12Identity, root_pem: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(root_pem)?)
                .identity(identity.tls_identity()?)
                .http1_only()
                .build()?,
            api: format!("{}/api/v1", issuer.trim_end_matches('/')),
        })
    }

    /// `pdf` sealed with the seal `seal` (PAdES, incremental update, the
    /// seal's image on the last page): `level` is `b-b`, `b-t`, `b-lt` or
    /// `b-lta`. Only the update travels back (`output=update`); it is
    /// appended here to the bytes sent, which the server's ByteRange
    /// counts on, so a document crosses the network once.
    pub async fn seal_pdf(&self, seal: &str, pdf: Vec<u8>, level: &str) -> Result<Vec<u8>, Error> {
        let pdf = bytes::Bytes::from(pdf);
        let reply = self
            .http
            .post(format!("{}/seals/{seal}/sign-pdf", self.api))
            .query(&[("level", level), ("output", "update")])
            .header("content-type", "application/pdf")
            .body(pdf.clone())
            .send()
            .await?;
        if !reply.status().is_success() {
            return Err(problem(reply).await);
        }
        let offset = reply
            .headers()
            .get("kexin-update-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if offset != Some(pdf.len()) {
            return Err(Error::Refused(format!(
                "the update is for a document of {offset:?} bytes, not the {} sent",
                pdf.len()
            )));
        }
        let update = reply.bytes().await?;
        // The request has let go of the document by now: reuse its buffer.
        let mut sealed = match pdf.try_into_mut() {
            Ok(unique) => Vec::from(unique),
            Err(shared) => shared.to_vec(),
        };
        sealed.extend_from_slice(&update);
        Ok(sealed)
    }

    /// The report on a signed PDF: verdict, and per signature its signer,
    /// seal, times, chain and revocation status.
    pub async fn verify_pdf(&self, pdf: Vec<u8>) -> Result<serde_json::Value, Error> {
        self.report(
            self.http
                .post(format!("{}/verify", self.api))
                .header("content-type", "application/pdf")
                .body(pdf),
        )
        .await
    }

    /// The report on a detached CMS signature (DER) over `content`.
    pub async fn verify_detached(
        &self,
        signature: &[u8],
        content: &[u8],
    ) -> Result<serde_json::Value, Error> {
        let body = serde_json::json!({ "signature": STANDARD.encode(signature), "content": STANDARD.encode(content) });
        self.report(self.http.post(format!("{}/verify", self.api)).json(&body))
            .await
    }

    /// The report on an e-license QR payload (or the verify URL carrying
    /// it): its facts, seal and registry status.
    pub async fn verify_license(&self, license: &str) -> Result<serde_json::Value, Error> {
        let body = serde_json::json!({ "license": license });
        self.report(self.http.post(format!("{}/verify", self.api)).json(&body))
            .await
    }

    /// A certificate's chain to Kexin's root and its revocation status now
    /// (`status`: good, revoked, hold or unknown; `verdict`).
    pub async fn check_certificate(
        &self,
        certificate_pem: &str,
    ) -> Result<serde_json::Value, Error> {
        let body = serde_json::json!({ "certificate": certificate_pem });
        self.report(self.http.post(format!("{}/verify", self.api)).json(&body))
            .await
    }

    async fn report(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value, Error> {
        let reply = request.send().await?;
        if !reply.status().is_success() {
            return Err(problem(reply).await);
        }
        Ok(reply.json().await?)
    }
}

/// An API refusal as the problem document's detail (RFC 9457).
async fn problem(reply: reqwest::Response) -> Error {
    let status = reply.status();
    let detail = reply
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|p| p["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| status.to_string());
    Error::Refused(format!("{status}: {detail}"))
}
