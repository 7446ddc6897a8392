//! rustls server configuration whose private key stays in the key store:
//! the TLS handshake signature is one more [`KeyStore::sign`] call, so the
//! HTTPS key can live on the PKCS#11 token beside the CA keys.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use kexin_hsm::{KeyAlgorithm, KeyStore, SignatureAlgorithm};
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::SignatureScheme;

#[derive(Debug)]
struct StoreKey {
    store: Arc<dyn KeyStore>,
    label: String,
    algorithm: KeyAlgorithm,
}

#[derive(Debug)]
struct StoreSigner {
    store: Arc<dyn KeyStore>,
    label: String,
    tls: SignatureScheme,
    ours: SignatureAlgorithm,
}

impl SigningKey for StoreKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        // In preference order; TLS 1.3 requires PSS for RSA keys.
        let candidates: &[(SignatureScheme, SignatureAlgorithm)] = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => &[(
                SignatureScheme::ECDSA_NISTP256_SHA256,
                SignatureAlgorithm::EcdsaSha256,
            )],
            KeyAlgorithm::EcdsaP384 => &[(
                SignatureScheme::ECDSA_NISTP384_SHA384,
                SignatureAlgorithm::EcdsaSha384,
            )],
            KeyAlgorithm::Ed25519 => &[(SignatureScheme::ED25519, SignatureAlgorithm::Ed25519)],
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => &[
                (
                    SignatureScheme::RSA_PSS_SHA256,
                    SignatureAlgorithm::RsaPssSha256,
                ),
                (
                    SignatureScheme::RSA_PKCS1_SHA256,
                    SignatureAlgorithm::RsaPkcs1Sha256,
                ),
            ],
            KeyAlgorithm::Sm2 => &[],
        };
        candidates
            .iter()
            .find(|(tls, _)| offered.contains(tls))
            .map(|&(tls, ours)| {
                Box::new(StoreSigner {
                    store: self.store.clone(),
                    label: self.label.clone(),
                    tls,
                    ours,
                }) as Box<dyn Signer>
            })
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        match self.algorithm {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => rustls::SignatureAlgorithm::ECDSA,
            KeyAlgorithm::Ed25519 => rustls::SignatureAlgorithm::ED25519,
            KeyAlgorithm::Sm2 => rustls::SignatureAlgorithm::Unknown(0),
            _ => rustls::SignatureAlgorithm::RSA,
        }
    }
}

impl Signer for StoreSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.store
            .sign(&self.label, self.ours, message)
            .map_err(|e| rustls::Error::General(format!("TLS signature: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.tls
    }
}

/// The chain the server presents, replaced when it is renewed while
/// serving: handshakes from then on present the new one.
#[derive(Debug)]
pub struct ServerCertificate {
    key: Arc<dyn SigningKey>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCertificate {
    /// The leaf certificate presented now, DER.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cert
            .first()
            .cloned()
    }

    /// The chain presented now, leaf first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cert
            .clone()
    }

    /// Presents `chain` (leaf first, for the same key) from now on.
    pub fn replace(&self, chain: Vec<CertificateDer<'static>>) {
        let renewed = Arc::new(CertifiedKey::new(chain, self.key.clone()));
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = renewed;
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// A server configuration presenting `chain` (leaf first) with the key
/// `label`, and the handle that renews the chain.
pub fn server_config(
    store: Arc<dyn KeyStore>,
    label: &str,
    chain: Vec<CertificateDer<'static>>,
    clients: ClientCertificates,
) -> anyhow::Result<(rustls::ServerConfig, Arc<ServerCertificate>)> {
    let algorithm = store
        .public_key(label)
        .with_context(|| format!("HTTPS key {label:?}"))?
        .algorithm;
    let key: Arc<dyn SigningKey> = Arc::new(StoreKey {
        store,
        label: label.to_owned(),
        algorithm,
    });
    let certificate = Arc::new(ServerCertificate {
        current: RwLock::new(Arc::new(CertifiedKey::new(chain, key.clone()))),
        key,
    });
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // TLS_AES_128_GCM_SHA256 first, the suite every TLS 1.3 peer implements
    // and browsers list first: its handshake hash runs on the CPU's SHA-256
    // instructions, where SHA-384 is computed in software.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(clients))
        .with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    // No session resumption. In TLS 1.3 a resumed handshake takes as many
    // round trips as a full one (there is no 0-RTT here), so it would save
    // only the handshake signature and the client's chain check; an
    // in-process session cache would not outlive a restart or reach
    // another node; and the tickets cost every new connection two
    // encryptions, a cache insertion and one more write (7-10% of the
    // server's CPU per certificate sign-in in A/B runs).
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok((config, certificate))
}

/// The client certificates a TLS peer presented (empty without one),
/// shared by every request of the connection.
#[derive(Clone, Debug, Default)]
pub struct PeerCertificates(pub Arc<[CertificateDer<'static>]>);

/// Accepts client certificates issued by one of Kexin's CAs (`officials`
/// for officers, `systems` for systems), checked with Kexin's own signature
/// verification so SM2 hierarchies work too. A client certificate is
/// optional at the TLS layer: the API refuses requests without one, the
/// public endpoints do not need one. Revocation and the caller's role are
/// checked per request, against the database, by the API.
#[derive(Debug)]
pub struct ClientCertificates {
    cas: Vec<x509_cert::Certificate>,
    hints: Vec<rustls::DistinguishedName>,
    verified: kexin_ca::verify::VerifiedSignatures,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertificates {
    pub fn new(cas: Vec<x509_cert::Certificate>) -> anyhow::Result<Self> {
        use der::Encode;
        let hints = cas
            .iter()
            .map(|c| {
                Ok(rustls::DistinguishedName::from(
                    c.tbs_certificate.subject.to_der()?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            cas,
            hints,
            verified: Default::default(),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        })
    }
}

const OID_KP_CLIENT_AUTH: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

impl rustls::server::danger::ClientCertVerifier for ClientCertificates {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        use der::Decode;
        use rustls::{CertificateError, Error};
        let cert = x509_cert::Certificate::from_der(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let tbs = &cert.tbs_certificate;
        let issuer = self
            .cas
            .iter()
            .find(|ca| ca.tbs_certificate.subject == tbs.issuer)
            .ok_or(Error::InvalidCertificate(CertificateError::UnknownIssuer))?;
        let signed = kexin_ca::csr::raw_first_element(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        self.verified
            .verify(
                &issuer.tbs_certificate.subject_public_key_info,
                &cert.signature_algorithm,
                &signed,
                cert.signature.raw_bytes(),
                &[kexin_hsm::SM2_DEFAULT_ID],
            )
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature))?;
        let now = now.as_secs();
        if now < tbs.validity.not_before.to_unix_duration().as_secs() {
            return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
        }
        if now > tbs.validity.not_after.to_unix_duration().as_secs() {
            return Err(Error::InvalidCertificate(CertificateError::Expired));
        }
        let eku = tbs
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE);
        if let Some(e) = eku {
            let eku = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes())
                .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
            if !eku.0.contains(&OID_KP_CLIENT_AUTH) {
                return Err(Error::InvalidCertificate(CertificateError::InvalidPurpose));
            }
        }
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
