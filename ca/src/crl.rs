//! Full CRLs (RFC 5280 §5), one per CA.
//!
//! Entries are streamed from storage and DER-encoded one at a time straight
//! into the output buffer, so memory grows with the size of the CRL itself
//! (about 40 bytes per entry) and never holds per-entry structures; a
//! million-entry CRL is one ~40 MB buffer and one signature.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use const_oid::AssociatedOid;
use der::asn1::{GeneralizedTime, Uint};
use der::{Encode, Length};
use futures_util::TryStreamExt;
use kexin_hsm::KeyStore;
use x509_cert::ext::pkix::crl::CrlNumber;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::Extension;

use crate::certificate::{authority_key_identifier, der_err, extension, key_identifier, x509_time};
use crate::issuance::SigningAuthority;
use crate::revocation::RevocationReason;
use crate::storage::{CrlRecord, Database, RevokedEntry};
use crate::Error;

/// id-ce-invalidityDate.
const OID_INVALIDITY_DATE: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("2.5.29.24");

#[derive(Clone, Debug)]
pub struct CrlIssuer {
    db: Database,
    store: Arc<dyn KeyStore>,
    /// thisUpdate to nextUpdate.
    pub validity: Duration,
}

impl CrlIssuer {
    pub fn new(db: Database, store: Arc<dyn KeyStore>, validity: Duration) -> Self {
        Self {
            db,
            store,
            validity,
        }
    }

    /// Generates, signs and stores a new CRL for `ca`.
    pub async fn generate(&self, ca: &SigningAuthority) -> Result<CrlRecord, Error> {
        let number = self.db.next_crl_number(&ca.name).await?;
        let now = SystemTime::now();
        let this_update = unix(now);
        let next_update = now + self.validity;

        // One buffer, written front to back: gaps are left where the three
        // enclosing headers go (CertificateList, TBSCertList and
        // revokedCertificates), because their lengths are known only after
        // the entries have been streamed in. Peak memory is about one CRL.
        const GAP: usize = 6;
        let issuer_tbs = &ca.certificate.tbs_certificate;
        // Sized up front (an entry is 40-50 bytes) so the buffer does not
        // double and copy itself while entries stream in.
        let expected = self.db.count_revoked(&ca.name, this_update).await?.max(0) as usize;
        let mut buf = Vec::with_capacity(expected * 48 + 4096);
        buf.resize(2 * GAP, 0);
        let prefix_start = buf.len();
        1u8.encode_to_vec(&mut buf).map_err(der_err)?; // version v2
        ca.signature
            .algorithm_identifier()
            .encode_to_vec(&mut buf)
            .map_err(der_err)?;
        issuer_tbs
            .subject
            .encode_to_vec(&mut buf)
            .map_err(der_err)?;
        x509_time(now)?.encode_to_vec(&mut buf).map_err(der_err)?;
        x509_time(next_update)?
            .encode_to_vec(&mut buf)
            .map_err(der_err)?;
        let prefix_end = buf.len();
        buf.extend_from_slice(&[0u8; GAP]);
        let entries_start = buf.len();
        let mut stream = std::pin::pin!(self.db.revoked_entries(&ca.name, this_update));
        while let Some(entry) = stream.try_next().await? {
            encode_entry(&entry, &mut buf)?;
        }
        let entries_len = buf.len() - entries_start;
        let crl_extensions: Vec<Extension> = vec![
            authority_key_identifier(&key_identifier(&issuer_tbs.subject_public_key_info))?,
            extension(
                &CrlNumber(Uint::new(&number.to_be_bytes()).map_err(der_err)?),
                false,
            )?,
        ];
        let exts = crl_extensions.to_der().map_err(der_err)?;
        header(0xa0, exts.len(), &mut buf)?;
        buf.extend_from_slice(&exts);

        // Close the gap before the entries: write their header right-aligned
        // in it (or drop the gap when there are no entries, as RFC 5280
        // wants), then slide the short prefix up against it.
        let gap_fill = if entries_len > 0 {
            header_bytes(0x30, entries_len)?
        } else {
            Vec::new()
        };
        let shift = GAP - gap_fill.len();
        buf[entries_start - gap_fill.len()..entries_start].copy_from_slice(&gap_fill);
        buf.copy_within(prefix_start..prefix_end, prefix_start + shift);
        let tbs_start = prefix_start + shift;
        let tbs_header = header_bytes(0x30, buf.len() - tbs_start)?;
        let tbs_header_start = tbs_start - tbs_header.len();
        buf[tbs_header_start..tbs_start].copy_from_slice(&tbs_header);

        let store = self.store.clone();
        let (label, alg) = (ca.key_label.clone(), ca.signature);
        let (mut buf, signature) = tokio::task::spawn_blocking(move || {
            let sig = store.sign(&label, alg, &buf[tbs_header_start..]);
            (buf, sig)
        })
        .await
        .map_err(|e| Error::Crypto(format!("CRL signing task: {e}")))?;
        let signature = signature?;
        ca.signature
            .algorithm_identifier()
            .encode_to_vec(&mut buf)
            .map_err(der_err)?;
        header(0x03, signature.len() + 1, &mut buf)?;
        buf.push(0);
        buf.extend_from_slice(&signature);
        let outer = header_bytes(0x30, buf.len() - tbs_header_start)?;
        let start = tbs_header_start - outer.len();
        buf[start..tbs_header_start].copy_from_slice(&outer);
        buf.drain(..start);
        let der = buf;

        let record = CrlRecord {
            number,
            this_update,
            next_update: unix(next_update),
            der,
        };
        self.db.store_crl(&ca.name, &record).await?;
        tracing::info!(ca = %ca.name, number, bytes = record.der.len(), "CRL generated");
        Ok(record)
    }
}

/// Appends one revokedCertificates entry:
/// `SEQUENCE { serial INTEGER, revocationDate Time, crlEntryExtensions OPTIONAL }`.
fn encode_entry(e: &RevokedEntry, out: &mut Vec<u8>) -> Result<(), Error> {
    let serial =
        hex::decode(&e.serial).map_err(|_| Error::Storage(format!("bad serial {}", e.serial)))?;
    let serial = Uint::new(&serial).map_err(der_err)?;
    let date = x509_time(SystemTime::UNIX_EPOCH + Duration::from_secs(e.revoked_at.max(0) as u64))?;
    let mut exts: Vec<Extension> = Vec::new();
    // RFC 5280 §5.3.1: unspecified should be expressed by omitting reasonCode.
    if let Some(reason) =
        RevocationReason::from_code(e.reason).filter(|r| *r != RevocationReason::Unspecified)
    {
        exts.push(Extension {
            extn_id: CrlReason::OID,
            critical: false,
            extn_value: der::asn1::OctetString::new(reason.crl_reason().to_der().map_err(der_err)?)
                .map_err(der_err)?,
        });
    }
    if let Some(invalid) = e.invalidity_date {
        let t = GeneralizedTime::from_unix_duration(Duration::from_secs(invalid.max(0) as u64))
            .map_err(der_err)?;
        exts.push(Extension {
            extn_id: OID_INVALIDITY_DATE,
            critical: false,
            extn_value: der::asn1::OctetString::new(t.to_der().map_err(der_err)?)
                .map_err(der_err)?,
        });
    }
    let ext_len = if exts.is_empty() {
        Length::ZERO
    } else {
        exts.encoded_len().map_err(der_err)?
    };
    let len = (serial.encoded_len().map_err(der_err)? + date.encoded_len().map_err(der_err)?)
        .map_err(der_err)?;
    let len = (len + ext_len).map_err(der_err)?;
    header(0x30, u32::from(len) as usize, out)?;
    serial.encode_to_vec(out).map_err(der_err)?;
    date.encode_to_vec(out).map_err(der_err)?;
    if !exts.is_empty() {
        exts.encode_to_vec(out).map_err(der_err)?;
    }
    Ok(())
}

/// Appends a DER tag and definite length.
fn header(tag: u8, len: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    out.extend_from_slice(&header_bytes(tag, len)?);
    Ok(())
}

/// A DER tag and definite length: at most 6 bytes for anything under 4 GiB.
fn header_bytes(tag: u8, len: usize) -> Result<Vec<u8>, Error> {
    let mut out = vec![tag];
    Length::try_from(len)
        .map_err(der_err)?
        .encode_to_vec(&mut out)
        .map_err(der_err)?;
    Ok(out)
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
