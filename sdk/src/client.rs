//! For the official's side: sign in by signed challenge with the key and
//! certificate of a PKCS#12 file (a soft certificate, or a USB key's export
//! for testing), where TLS client authentication cannot reach Kexin end to
//! end; and trust helpers for any system — a time-stamp for some data, a
//! verification report for a signed artifact.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::Error;

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

/// A signed-in session at the provider (its cookie is in `http`): follow an
/// authorization URL with it to get a code without a client certificate.
pub struct ProviderSession {
    pub http: reqwest::Client,
    pub name: Option<String>,
}

/// Signs in to Kexin by signed challenge for `client_id`.
pub async fn challenge_login(
    issuer: &str,
    client_id: &str,
    identity: &Pkcs12Identity,
    root_pem: Option<&[u8]>,
) -> Result<ProviderSession, Error> {
    let mut builder = reqwest::Client::builder()
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
    let signature = identity
        .key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), message.as_bytes())
        .map_err(|_| Error::Refused("signing failed".into()))?;
    let answer: serde_json::Value = http
        .post(format!("{issuer}/oidc/challenge/answer"))
        .json(&serde_json::json!({
            "challenge_id": challenge["challenge_id"],
            "certificate": identity.certificate_pem,
            "signature": STANDARD.encode(signature.as_ref()),
        }))
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
    })
}

/// An RFC 3161 time-stamp token (DER reply) for `data`, from Kexin's TSA
/// (`{http_base}/tsa`).
pub async fn timestamp(http_base: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    // TimeStampReq { version 1, messageImprint { sha256, digest }, certReq TRUE }
    let mut imprint = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    imprint.extend_from_slice(digest.as_ref());
    let mut body = vec![0x02, 0x01, 0x01];
    body.extend_from_slice(&imprint);
    body.extend_from_slice(&[0x01, 0x01, 0xff]);
    let mut request = vec![0x30, body.len() as u8];
    request.extend_from_slice(&body);
    let reply = reqwest::Client::new()
        .post(format!("{}/tsa", http_base.trim_end_matches('/')))
        .header("content-type", "application/timestamp-query")
        .body(request)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(reply.to_vec())
}

/// Kexin's verification report for a signed PDF, as the officer or system
/// whose identity calls the API.
pub async fn verify_pdf(
    issuer: &str,
    identity: &Pkcs12Identity,
    root_pem: &[u8],
    pdf: Vec<u8>,
) -> Result<serde_json::Value, Error> {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem)?)
        .identity(identity.tls_identity()?)
        .build()?;
    Ok(http
        .post(format!("{}/api/v1/verify", issuer.trim_end_matches('/')))
        .header("content-type", "application/pdf")
        .body(pdf)
        .send()
        .await?
        .json()
        .await?)
}
