//! rustls server configuration whose private key stays in the key store:
//! the TLS handshake signature is one more [`KeyStore::sign`] call, so the
//! HTTPS key can live on the PKCS#11 token beside the CA keys.

use std::sync::Arc;

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

#[derive(Debug)]
struct FixedCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A server configuration presenting `chain` (leaf first) with the key `label`.
pub fn server_config(
    store: Arc<dyn KeyStore>,
    label: &str,
    chain: Vec<CertificateDer<'static>>,
) -> anyhow::Result<rustls::ServerConfig> {
    let algorithm = store
        .public_key(label)
        .with_context(|| format!("HTTPS key {label:?}"))?
        .algorithm;
    let key = Arc::new(StoreKey {
        store,
        label: label.to_owned(),
        algorithm,
    });
    let certified = Arc::new(CertifiedKey::new(chain, key));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(FixedCertificate(certified)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
