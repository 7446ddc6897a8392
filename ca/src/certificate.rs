//! Building blocks of X.509 certificates: names, serials, times, extensions
//! and the signature over a TBSCertificate made through a [`kexin_hsm::KeyStore`].

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use const_oid::db::rfc4519;
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::{BitString, Ia5String, OctetString, PrintableString, SetOfVec, Utf8StringRef};
use der::{Any, DateTime, Decode, Encode};
use kexin_hsm::SignatureAlgorithm;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName, GeneralNames};
use x509_cert::ext::pkix::{
    constraints::name::{GeneralSubtree, NameConstraints},
    crl::dp::DistributionPoint,
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
    CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate};

use crate::Error;

/// id-ad-caIssuers.
pub const OID_AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");
/// id-ad-ocsp.
pub const OID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-kp-serverAuth.
pub const OID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// id-kp-clientAuth.
pub const OID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// A distinguished name built attribute by attribute, in order.
/// Country and serialNumber are PrintableString (RFC 5280 appendix A);
/// everything else is UTF8String so Chinese names are carried as they are.
#[derive(Clone, Debug, Default)]
pub struct DistinguishedName(Vec<(ObjectIdentifier, String)>);

impl DistinguishedName {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, oid: ObjectIdentifier, value: impl Into<String>) -> Self {
        self.0.push((oid, value.into()));
        self
    }

    pub fn country(self, v: impl Into<String>) -> Self {
        self.with(rfc4519::C, v)
    }

    pub fn organization(self, v: impl Into<String>) -> Self {
        self.with(rfc4519::O, v)
    }

    pub fn common_name(self, v: impl Into<String>) -> Self {
        self.with(rfc4519::CN, v)
    }

    pub fn to_name(&self) -> Result<Name, Error> {
        let mut rdns = Vec::with_capacity(self.0.len());
        for (oid, value) in &self.0 {
            if value.is_empty() {
                return Err(Error::InvalidName(format!("empty value for {oid}")));
            }
            let any = if *oid == rfc4519::C || *oid == rfc4519::SERIAL_NUMBER {
                Any::from(
                    &PrintableString::new(value)
                        .map_err(|_| Error::InvalidName(format!("{value:?} is not printable")))?,
                )
            } else {
                Any::from(Utf8StringRef::new(value).map_err(|e| Error::InvalidName(e.to_string()))?)
            };
            let atv = AttributeTypeAndValue {
                oid: *oid,
                value: any,
            };
            let set =
                SetOfVec::try_from(vec![atv]).map_err(|e| Error::InvalidName(e.to_string()))?;
            rdns.push(RelativeDistinguishedName::from(set));
        }
        Ok(RdnSequence(rdns))
    }
}

/// A fresh 16-byte serial: the current time in milliseconds (6 bytes,
/// big-endian), then 80 random bits, well above the 64 bits of CSPRNG
/// output that CA/B and RFC 5280 practice require. Unique across restarts
/// and nodes like a fully random serial, but in time order, so that the
/// index on serials grows at its right edge: random serials dirtied a
/// random page of it for every certificate (and every time-stamp token),
/// which a batch of them then wrote to the log page by page.
pub fn time_ordered_serial() -> Result<[u8; 16], Error> {
    serial_at(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// [`time_ordered_serial`] for a given time since the epoch.
pub fn serial_at(since_epoch: Duration) -> Result<[u8; 16], Error> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&(since_epoch.as_millis() as u64).to_be_bytes()[2..]);
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes[6..])
        .map_err(|_| Error::Crypto("system RNG failed".into()))?;
    // Positive, and a first byte that DER keeps, so the length is stable.
    bytes[0] = (bytes[0] & 0x7f).max(1);
    Ok(bytes)
}

/// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
/// Sub-second precision is dropped, as DER requires.
pub fn x509_time(t: SystemTime) -> Result<Time, Error> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::Crypto("time before 1970".into()))?
        .as_secs();
    let dt = DateTime::from_unix_duration(Duration::from_secs(secs))
        .map_err(|e| Error::Crypto(e.to_string()))?;
    if dt.year() < 2050 {
        Ok(Time::UtcTime(
            der::asn1::UtcTime::from_date_time(dt).map_err(|e| Error::Crypto(e.to_string()))?,
        ))
    } else {
        Ok(Time::GeneralTime(
            der::asn1::GeneralizedTime::from_date_time(dt),
        ))
    }
}

pub fn unix_seconds(t: &Time) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

/// Key identifier per RFC 7093 §2 method 1: the leftmost 160 bits of the
/// SHA-256 of the subjectPublicKey bits.
pub fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        spki.subject_public_key.raw_bytes(),
    );
    digest.as_ref()[..20].to_vec()
}

/// Encodes an extension value.
pub fn extension<T: AssociatedOid + Encode>(value: &T, critical: bool) -> Result<Extension, Error> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(der_err)?).map_err(der_err)?,
    })
}

pub fn basic_constraints(ca: bool, path_len: Option<u8>) -> Result<Extension, Error> {
    extension(
        &BasicConstraints {
            ca,
            path_len_constraint: path_len,
        },
        true,
    )
}

pub fn key_usage(usages: impl Into<flagset::FlagSet<KeyUsages>>) -> Result<Extension, Error> {
    extension(&KeyUsage(usages.into()), true)
}

pub fn extended_key_usage(oids: Vec<ObjectIdentifier>, critical: bool) -> Result<Extension, Error> {
    extension(&ExtendedKeyUsage(oids), critical)
}

pub fn subject_key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Result<Extension, Error> {
    extension(
        &SubjectKeyIdentifier(OctetString::new(key_identifier(spki)).map_err(der_err)?),
        false,
    )
}

pub fn authority_key_identifier(issuer_key_id: &[u8]) -> Result<Extension, Error> {
    extension(
        &AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(issuer_key_id).map_err(der_err)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
        false,
    )
}

fn uri(u: &str) -> Result<GeneralName, Error> {
    Ok(GeneralName::UniformResourceIdentifier(
        Ia5String::new(u).map_err(|_| Error::InvalidName(format!("{u:?} is not an IA5 URI")))?,
    ))
}

/// Authority Information Access: where the issuer certificate and OCSP live.
pub fn authority_info_access(ca_issuers: &str, ocsp: Option<&str>) -> Result<Extension, Error> {
    let mut access = vec![AccessDescription {
        access_method: OID_AD_CA_ISSUERS,
        access_location: uri(ca_issuers)?,
    }];
    if let Some(ocsp) = ocsp {
        access.insert(
            0,
            AccessDescription {
                access_method: OID_AD_OCSP,
                access_location: uri(ocsp)?,
            },
        );
    }
    extension(&AuthorityInfoAccessSyntax(access), false)
}

pub fn crl_distribution_point(url: &str) -> Result<Extension, Error> {
    extension(
        &CrlDistributionPoints(vec![DistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
            reasons: None,
            crl_issuer: None,
        }]),
        false,
    )
}

/// A SAN entry: an IP address if it parses as one, a DNS name otherwise.
pub fn general_name(name: &str) -> Result<GeneralName, Error> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(GeneralName::from(ip));
    }
    Ok(GeneralName::DnsName(Ia5String::new(name).map_err(
        |_| Error::InvalidName(format!("{name:?} is not a DNS name")),
    )?))
}

pub fn subject_alt_name(names: &[String], critical: bool) -> Result<Extension, Error> {
    let names: GeneralNames = names
        .iter()
        .map(|n| general_name(n))
        .collect::<Result<_, _>>()?;
    extension(&SubjectAltName(names), critical)
}

/// Permitted DNS subtrees for a CA (RFC 5280 §4.2.1.10).
pub fn name_constraints_dns(permitted: &[String]) -> Result<Extension, Error> {
    let subtrees = permitted
        .iter()
        .map(|d| {
            Ok(GeneralSubtree {
                base: GeneralName::DnsName(
                    Ia5String::new(d)
                        .map_err(|_| Error::InvalidName(format!("{d:?} is not a DNS name")))?,
                ),
                minimum: 0,
                maximum: None,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    extension(
        &NameConstraints {
            permitted_subtrees: Some(subtrees),
            excluded_subtrees: None,
        },
        true,
    )
}

/// Everything about a certificate except who signs it.
#[derive(Clone, Debug)]
pub struct CertificateTemplate {
    pub subject: Name,
    pub public_key: SubjectPublicKeyInfoOwned,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub extensions: Vec<Extension>,
}

/// Assembles the TBSCertificate for `template` under `issuer`.
pub fn tbs_certificate(
    template: &CertificateTemplate,
    serial: &[u8],
    issuer: &Name,
    signature: SignatureAlgorithm,
) -> Result<TbsCertificate, Error> {
    Ok(TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: SerialNumber::new(serial).map_err(der_err)?,
        signature: signature.algorithm_identifier(),
        issuer: issuer.clone(),
        validity: Validity {
            not_before: x509_time(template.not_before)?,
            not_after: x509_time(template.not_after)?,
        },
        subject: template.subject.clone(),
        subject_public_key_info: template.public_key.clone(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(template.extensions.clone()),
    })
}

/// Signs a TBSCertificate with the key `label` in `store`.
/// Puts a certificate together from its contents and the signature made
/// over their DER.
pub fn assemble_certificate(
    tbs: TbsCertificate,
    signature: SignatureAlgorithm,
    signature_value: &[u8],
) -> Result<Certificate, Error> {
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: signature.algorithm_identifier(),
        signature: BitString::from_bytes(signature_value).map_err(der_err)?,
    })
}

pub fn parse_spki(der: &[u8]) -> Result<SubjectPublicKeyInfoOwned, Error> {
    SubjectPublicKeyInfoOwned::from_der(der).map_err(der_err)
}

pub fn serial_hex(serial: &SerialNumber) -> String {
    hex::encode(serial.as_bytes())
}

pub(crate) fn der_err(e: der::Error) -> Error {
    Error::Encoding(e.to_string())
}

/// PEM armour for a DER certificate.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The first certificate of a PEM text, or `None` if it has none or it
/// does not decode. Text outside the armour is ignored (RFC 7468 §2:
/// parsers must not malfunction on it): `openssl pkcs12 -nokeys` puts
/// "Bag Attributes" lines before each certificate, `openssl x509 -text`
/// its dump; the strict `der::pem::decode_vec` of the CSR path refuses
/// both.
///
/// Outside PEM must not reach der 0.7's streaming PEM reader (under
/// x509-cert's `load_pem_chain` and `DecodePem`): it loops forever on a
/// body shorter than the length it declares (README, "Fuzzing"). Here the
/// armour's body is decoded with the `base64` crate first and the DER
/// parsed from a slice. It is also cheaper: under perf a signed-challenge
/// sign-in spent ~4.0% of its server CPU reading the answer's certificate
/// through the streaming reader and ~3.2% this way, nearly all of it the
/// DER parse.
pub fn first_certificate_from_pem(text: &[u8]) -> Option<Certificate> {
    Certificate::from_der(&first_certificate_der_from_pem(text)?).ok()
}

/// The DER of the first certificate of a PEM text, not parsed: for a
/// caller that looks its certificates up by their bytes first. `None` if
/// the text has no certificate block or its base64 does not decode.
pub fn first_certificate_der_from_pem(text: &[u8]) -> Option<Vec<u8>> {
    next_pem_block(text)?.0
}

/// Every certificate of a PEM text, in order; `None` if one of them does
/// not decode. Safe on outside bytes, as [`first_certificate_from_pem`].
pub fn certificates_from_pem(mut text: &[u8]) -> Option<Vec<Certificate>> {
    let mut out = Vec::new();
    while let Some((der, rest)) = next_pem_block(text) {
        out.push(Certificate::from_der(&der?).ok()?);
        text = rest;
    }
    Some(out)
}

/// The bytes of the next `CERTIFICATE` block of `text`, if its base64
/// decodes, and the text after it; `None` when no whole block is left.
fn next_pem_block(text: &[u8]) -> Option<(Option<Vec<u8>>, &[u8])> {
    use base64::Engine;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let start = memchr::memmem::find(text, BEGIN)? + BEGIN.len();
    let len = memchr::memmem::find(&text[start..], END)?;
    let mut body = text[start..start + len].to_vec();
    body.retain(|b| !b.is_ascii_whitespace());
    let der = base64::engine::general_purpose::STANDARD.decode(body).ok();
    Some((der, &text[start + len + END.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_certificate_of_a_pem_text_is_read_as_x509_cert_reads_it() {
        // A self-signed P-256 certificate made with openssl.
        let pem = certificate_pem(&base64::Engine::decode(&base64::engine::general_purpose::STANDARD,
            "MIIBdjCCARugAwIBAgIUNTX98pFuAtGwfI2o3pZqhWFpdE8wCgYIKoZIzj0EAwIwEDEOMAwGA1UEAwwFa2V4aW4wHhcNMjYxMjA2MTcyNDQ1WhcNMzYxMjAzMTcyNDQ1WjAQMQ4wDAYDVQQDDAVrZXhpbjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEYu37M0KxRGul3ED+lLDY84UpV5rPL2Pbs+atcXfUsAaXyugpu/7wQqvCPRccLcOOXEEcbrfPy4Ww0iXicVqi+jUzBRMB0GA1UdDgQWBBSsIdcX5xe3D+hi+bXs3WA+bgQqFjAfBgNVHSMEGDAWgBSsIdcX5xe3D+hi+bXs3WA+bgQqFjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCiQxtLwgX/GGVSJS7kNP3Lv7jXrxGrExQxDU+nqoVPvgIhANbcF82JX0yLPhCdRXZt8e3iDRqd04CtmXHhI9aSlNIX",
        ).unwrap());
        let chain = format!("subject=CN=x\r\n{}{}", pem.replace('\n', "\r\n"), pem);
        let ours = first_certificate_from_pem(chain.as_bytes()).unwrap();
        let theirs = Certificate::load_pem_chain(pem.as_bytes()).unwrap();
        assert_eq!(ours, theirs[0]);
        assert_eq!(
            first_certificate_der_from_pem(chain.as_bytes()),
            ours.to_der().ok()
        );
        assert_eq!(
            certificates_from_pem(chain.as_bytes()).unwrap(),
            [ours.clone(), ours]
        );
        assert_eq!(certificates_from_pem(b"no PEM here"), Some(vec![]));
        for broken in [
            pem.replace("-----END CERTIFICATE-----", ""),
            pem.replacen('M', "*", 1),
            pem[..pem.len() / 2].to_owned(),
            String::new(),
            // A body shorter than the length it declares (der 0.7's
            // streaming PEM reader loops forever on it: README, "Fuzzing").
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_owned(),
        ] {
            assert!(
                first_certificate_from_pem(broken.as_bytes()).is_none()
                    && certificates_from_pem(format!("{pem}{broken}").as_bytes())
                        .is_none_or(|c| c.len() == 1),
                "{broken}"
            );
        }
    }

    #[test]
    fn serials_follow_time_and_keep_80_random_bits() {
        let t = Duration::from_millis(1_795_000_000_000);
        let (a, b) = (serial_at(t).unwrap(), serial_at(t).unwrap());
        let later = serial_at(t + Duration::from_millis(1)).unwrap();
        assert_eq!(a[..6], b[..6]);
        assert_ne!(a[6..], b[6..], "the last 10 bytes are random");
        assert!(a < later && b < later, "a later serial sorts after");
        for s in [a, b, later] {
            assert!(
                (1..0x80).contains(&s[0]),
                "positive, DER keeps all 16 bytes"
            );
        }
    }
}
