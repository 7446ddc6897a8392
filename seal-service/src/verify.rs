//! Verification of sealed artifacts — Kexin's and other tools' — into a
//! report a person can act on: is it intact, who sealed it, when (and is
//! that time proven by a time-stamp), does the signer chain to a trusted
//! root, was the certificate good when it signed and is it good now, and
//! did the document change afterwards. The verdict is `valid`, `invalid`
//! or `indeterminate`, with the reason: a stable [`Reason`] code that
//! pages translate, and an English sentence with the technical detail.
//!
//! What "changed afterwards" means for a PDF here: every revision appended
//! after a signature is classified as a later signature, a document
//! time-stamp, validation data (DSS), or something else. Only the last
//! makes the verdict indeterminate; this is a classification of
//! revisions, not a full object-by-object diff like pyHanko's.

use std::io::Read;

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::OctetString;
use der::{Decode, Encode};
use kexin_ca::cms::{
    DigestAlgorithm, OID_MESSAGE_DIGEST, OID_SIGNATURE_TIME_STAMP, OID_SIGNING_TIME,
};
use kexin_ca::storage::Database;
use serde::Serialize;
use x509_cert::Certificate;

use crate::pdf::{off_the_executor, signature_fields};
use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    Indeterminate,
}

/// What is trusted: root certificates, and CA certificates that may
/// complete a chain.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub roots: Vec<Certificate>,
    pub intermediates: Vec<Certificate>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SealInfo {
    pub name: String,
    pub organization: String,
    pub uscc: Option<String>,
    pub kind: String,
    pub status: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimeStampInfo {
    /// RFC 3339.
    pub time: String,
    pub tsa: String,
    pub valid: bool,
    pub problem: Option<String>,
}

/// Why a verdict is what it is, as a stable code (serialized in
/// kebab-case) that a page can put into the reader's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Intact, trusted and not revoked (every signature, for a report).
    Valid,
    /// The certificate was revoked after the time-stamped signing time.
    ValidRevokedLater,
    Revoked,
    OnHold,
    StatusUnknown,
    Untrusted,
    /// The signed content's digest does not match.
    ContentChanged,
    SignatureInvalid,
    /// A signature that cannot be read or lacks what it needs.
    Malformed,
    ByteRangeIncomplete,
    /// A PDF revision after the signature that is not a signature, a
    /// time-stamp or validation data.
    ChangedAfterSigning,
    TimestampValid,
    ChangedAfterTimestamp,
    TimestampUntrusted,
    NoSignature,
    /// The file is not one Kexin can read (not a PDF, broken structure).
    Unreadable,
    NotALicense,
    UnknownSeal,
    LicenseForged,
    NotRegistered,
    LicenseRevoked,
    /// The payload is not the one the registry holds for its number.
    PayloadMismatch,
    SealCertificateNotIssued,
    OutsideValidity,
    LicenseValid,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::ValidRevokedLater => "valid-revoked-later",
            Self::Revoked => "revoked",
            Self::OnHold => "on-hold",
            Self::StatusUnknown => "status-unknown",
            Self::Untrusted => "untrusted",
            Self::ContentChanged => "content-changed",
            Self::SignatureInvalid => "signature-invalid",
            Self::Malformed => "malformed",
            Self::ByteRangeIncomplete => "byte-range-incomplete",
            Self::ChangedAfterSigning => "changed-after-signing",
            Self::TimestampValid => "timestamp-valid",
            Self::ChangedAfterTimestamp => "changed-after-timestamp",
            Self::TimestampUntrusted => "timestamp-untrusted",
            Self::NoSignature => "no-signature",
            Self::Unreadable => "unreadable",
            Self::NotALicense => "not-a-license",
            Self::UnknownSeal => "unknown-seal",
            Self::LicenseForged => "license-forged",
            Self::NotRegistered => "not-registered",
            Self::LicenseRevoked => "license-revoked",
            Self::PayloadMismatch => "payload-mismatch",
            Self::SealCertificateNotIssued => "seal-certificate-not-issued",
            Self::OutsideValidity => "outside-validity",
            Self::LicenseValid => "license-valid",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SignatureReport {
    /// PDF field name, if any.
    pub field: Option<String>,
    /// `signature` or `document-timestamp`.
    pub kind: &'static str,
    pub format: String,
    pub intact: bool,
    pub signer: Option<String>,
    pub seal: Option<SealInfo>,
    /// The signer's claim (signing-time attribute or PDF /M), RFC 3339.
    pub claimed_time: Option<String>,
    pub timestamp: Option<TimeStampInfo>,
    pub chain: Vec<String>,
    pub trusted: bool,
    /// good, revoked (with time and reason), on hold, or unknown.
    pub status_now: String,
    pub good_at_signing_time: Option<bool>,
    /// PDF: whether the signature covers the whole file.
    pub covers_whole_document: Option<bool>,
    pub changes_after: Vec<String>,
    pub verdict: Verdict,
    pub reason_code: Reason,
    pub reason: String,
}

impl SignatureReport {
    fn because(&mut self, code: Reason, detail: impl Into<String>) {
        self.reason_code = code;
        self.reason = detail.into();
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub artifact: &'static str,
    pub verdict: Verdict,
    pub reason_code: Reason,
    pub reason: String,
    pub signatures: Vec<SignatureReport>,
}

impl Report {
    fn from_signatures(artifact: &'static str, signatures: Vec<SignatureReport>) -> Self {
        let worst = signatures
            .iter()
            .find(|s| s.verdict == Verdict::Invalid)
            .or_else(|| {
                signatures
                    .iter()
                    .find(|s| s.verdict == Verdict::Indeterminate)
            });
        let (verdict, reason_code, reason) = match (worst, signatures.is_empty()) {
            (_, true) => (
                Verdict::Indeterminate,
                Reason::NoSignature,
                "no signature found".to_owned(),
            ),
            (Some(s), _) => (s.verdict, s.reason_code, s.reason.clone()),
            (None, _) => (
                Verdict::Valid,
                Reason::Valid,
                format!("{} signature(s) valid", signatures.len()),
            ),
        };
        Self {
            artifact,
            verdict,
            reason_code,
            reason,
            signatures,
        }
    }
}

/// A detached CMS signature over `content`.
pub async fn verify_detached(
    signature: &[u8],
    content: &mut (dyn Read + Send),
    trust: &Trust,
    db: Option<&Database>,
) -> Report {
    let report = match parse_cms(signature) {
        Ok(sd) => {
            let digest =
                digest_algorithm_of(&sd).and_then(|alg| crate::cades::digest_reader(alg, content));
            match digest {
                Ok(d) => verify_signed_data(&sd, &d, trust, db, "CAdES (detached CMS)").await,
                Err(e) => broken(
                    None,
                    "CAdES (detached CMS)",
                    Reason::Malformed,
                    &e.to_string(),
                ),
            }
        }
        Err(e) => broken(None, "CMS", Reason::Malformed, &e.to_string()),
    };
    Report::from_signatures("detached-signature", vec![report])
}

fn broken(field: Option<String>, format: &str, code: Reason, why: &str) -> SignatureReport {
    SignatureReport {
        field,
        kind: "signature",
        format: format.to_owned(),
        intact: false,
        signer: None,
        seal: None,
        claimed_time: None,
        timestamp: None,
        chain: vec![],
        trusted: false,
        status_now: "unknown".into(),
        good_at_signing_time: None,
        covers_whole_document: None,
        changes_after: vec![],
        verdict: Verdict::Invalid,
        reason_code: code,
        reason: why.to_owned(),
    }
}

fn parse_cms(der: &[u8]) -> Result<SignedData, Error> {
    let ci = ContentInfo::from_der(first_tlv(der)?).map_err(crate::der_err)?;
    if ci.content_type != kexin_ca::cms::OID_SIGNED_DATA {
        return Err(Error::InvalidInput("not a CMS SignedData".into()));
    }
    ci.content.decode_as().map_err(crate::der_err)
}

/// The first DER element of `bytes` (PDF /Contents are zero-padded).
fn first_tlv(bytes: &[u8]) -> Result<&[u8], Error> {
    let mut reader = der::SliceReader::new(bytes).map_err(crate::der_err)?;
    let header = der::Header::decode(&mut reader).map_err(crate::der_err)?;
    let len =
        (header.encoded_len().map_err(crate::der_err)? + header.length).map_err(crate::der_err)?;
    let len = usize::try_from(len).map_err(crate::der_err)?;
    bytes
        .get(..len)
        .ok_or_else(|| Error::InvalidInput("truncated signature".into()))
}

fn digest_algorithm_of(sd: &SignedData) -> Result<DigestAlgorithm, Error> {
    let signer = sd
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| Error::InvalidInput("no signer".into()))?;
    DigestAlgorithm::from_oid(&signer.digest_alg.oid).ok_or_else(|| {
        Error::InvalidInput(format!(
            "unsupported digest algorithm {}",
            signer.digest_alg.oid
        ))
    })
}

/// Verifies the first signer of `sd` over content whose digest is `digest`.
async fn verify_signed_data(
    sd: &SignedData,
    digest: &[u8],
    trust: &Trust,
    db: Option<&Database>,
    format: &str,
) -> SignatureReport {
    let mut r = broken(None, format, Reason::Malformed, "");
    let Some(signer) = sd.signer_infos.0.iter().next() else {
        r.because(Reason::Malformed, "no signer");
        return r;
    };
    let certs: Vec<Certificate> = sd
        .certificates
        .iter()
        .flat_map(|s| s.0.iter())
        .filter_map(|c| match c {
            cms::cert::CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let cert = match &signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(iss) => certs.iter().find(|c| {
            c.tbs_certificate.issuer == iss.issuer
                && c.tbs_certificate.serial_number == iss.serial_number
        }),
        SignerIdentifier::SubjectKeyIdentifier(_) => certs.first(),
    };
    let Some(cert) = cert else {
        r.because(
            Reason::Malformed,
            "the signer's certificate is not in the signature",
        );
        return r;
    };
    r.signer = Some(kexin_ca::profile::readable_name(
        &cert.tbs_certificate.subject,
    ));
    let Some(attrs) = &signer.signed_attrs else {
        r.because(Reason::Malformed, "no signed attributes");
        return r;
    };
    let attr = |oid| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
    };
    let claimed = attr(OID_MESSAGE_DIGEST).and_then(|v| v.decode_as::<OctetString>().ok());
    if claimed.as_ref().map(|c| c.as_bytes()) != Some(digest) {
        r.because(
            Reason::ContentChanged,
            "the content does not match the signature: it was changed after signing",
        );
        return r;
    }
    let signed = match attrs.to_der() {
        Ok(d) => d,
        Err(e) => {
            r.because(Reason::Malformed, e.to_string());
            return r;
        }
    };
    if let Err(e) = kexin_ca::verify::verify_signature(
        &cert.tbs_certificate.subject_public_key_info,
        &signer.signature_algorithm,
        &signed,
        signer.signature.as_bytes(),
        &[kexin_hsm::SM2_DEFAULT_ID, ""],
    ) {
        r.because(
            Reason::SignatureInvalid,
            format!("the signature does not verify: {e}"),
        );
        return r;
    }
    r.intact = true;
    r.claimed_time = attr(OID_SIGNING_TIME).and_then(|v| {
        v.to_der()
            .ok()
            .and_then(|d| x509_cert::time::Time::from_der(&d).ok())
            .map(|t| rfc3339(t.to_unix_duration().as_secs()))
    });

    // The signature time-stamp proves when the signature existed.
    let mut proven_time = None;
    if let Some(token) = signer
        .unsigned_attrs
        .as_ref()
        .and_then(|u| u.iter().find(|a| a.oid == OID_SIGNATURE_TIME_STAMP))
        .and_then(|a| a.values.iter().next())
    {
        let mut extra = certs.clone();
        extra.extend(trust.intermediates.iter().cloned());
        let parsed = token
            .to_der()
            .ok()
            .and_then(|d| ContentInfo::from_der(&d).ok());
        let info = match parsed {
            Some(ci) => match kexin_timestamp::verify::verify_token(
                &ci,
                &mut signer.signature.as_bytes(),
                &extra,
                &trust.roots,
            ) {
                Ok(v) => {
                    proven_time = Some(v.gen_time_unix);
                    TimeStampInfo {
                        time: rfc3339(v.gen_time_unix),
                        tsa: v.tsa_subject,
                        valid: true,
                        problem: None,
                    }
                }
                Err(e) => TimeStampInfo {
                    time: String::new(),
                    tsa: String::new(),
                    valid: false,
                    problem: Some(e.to_string()),
                },
            },
            None => TimeStampInfo {
                time: String::new(),
                tsa: String::new(),
                valid: false,
                problem: Some("unreadable time-stamp token".into()),
            },
        };
        r.timestamp = Some(info);
    }

    let mut pool = certs.clone();
    pool.extend(trust.intermediates.iter().cloned());
    let at = proven_time.unwrap_or_else(crate::registry::now);
    match kexin_ca::verify::build_chain(cert, &pool, &trust.roots, at) {
        Ok(chain) => {
            r.chain = chain;
            r.trusted = true;
        }
        Err(e) => {
            r.verdict = Verdict::Indeterminate;
            r.because(Reason::Untrusted, format!("the signer is not trusted: {e}"));
            return r;
        }
    }
    let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
    let mut revoked_at = None;
    r.status_now = "unknown (not issued by this Kexin)".into();
    if let Some(db) = db {
        if let Ok(Some(record)) = db.certificate(&serial).await {
            revoked_at = record.revoked_at;
            r.status_now = match (record.status.as_str(), record.revoked_at) {
                ("revoked", Some(t)) => format!(
                    "revoked at {} ({})",
                    rfc3339(t as u64),
                    record
                        .revocation_reason
                        .and_then(kexin_ca::revocation::RevocationReason::from_code)
                        .map(|r| r.as_str())
                        .unwrap_or("unspecified")
                ),
                ("hold", _) => "on hold".into(),
                (s, _) => {
                    if s == "issued" {
                        "good".into()
                    } else {
                        s.to_owned()
                    }
                }
            };
            if let Ok(Some(seal)) = db.seal_by_certificate(&serial).await {
                r.seal = Some(SealInfo {
                    name: seal.name,
                    organization: seal.organization,
                    uscc: seal.uscc,
                    kind: seal.kind,
                    status: seal.status,
                });
            }
        }
    }
    r.good_at_signing_time = match (revoked_at, proven_time) {
        (None, _) => Some(!r.status_now.starts_with("unknown")),
        (Some(rev), Some(ts)) => Some((rev as u64) > ts),
        (Some(_), None) => Some(false),
    };
    let (verdict, code, why) = if r.status_now.starts_with("revoked") {
        match r.good_at_signing_time {
            Some(true) => (
                Verdict::Valid,
                Reason::ValidRevokedLater,
                "valid: the certificate was revoked only after the time-stamped signing time",
            ),
            _ => (
                Verdict::Invalid,
                Reason::Revoked,
                "the signer's certificate is revoked, and no time-stamp proves the signature came first",
            ),
        }
    } else if r.status_now == "on hold" {
        (
            Verdict::Indeterminate,
            Reason::OnHold,
            "the signer's certificate is on hold",
        )
    } else if r.status_now.starts_with("unknown") {
        (
            Verdict::Indeterminate,
            Reason::StatusUnknown,
            "the signature is intact and chains to a trusted root, but its revocation status is unknown here",
        )
    } else {
        (
            Verdict::Valid,
            Reason::Valid,
            "intact, trusted and not revoked",
        )
    };
    r.verdict = verdict;
    r.because(code, why);
    r
}

/// Every signature and document time-stamp of a PDF.
pub async fn verify_pdf(pdf: &[u8], trust: &Trust, db: Option<&Database>) -> Report {
    let parsed = off_the_executor(pdf.len(), || {
        pdf_signatures(pdf).map(|signatures| (signatures, revision_ends(pdf)))
    });
    let (signatures, revision_ends) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            return Report {
                artifact: "pdf",
                verdict: Verdict::Indeterminate,
                reason_code: Reason::Unreadable,
                reason: e.to_string(),
                signatures: vec![],
            }
        }
    };
    let ends: Vec<usize> = signatures.iter().map(|s| s.covered_end).collect();
    let mut reports = Vec::new();
    for sig in &signatures {
        // The signed byte ranges, read in place.
        let covered: Vec<&[u8]> = sig
            .ranges
            .iter()
            .filter_map(|(start, len)| pdf.get(*start..start + len))
            .collect();
        let mut report = if sig.doc_timestamp {
            off_the_executor(pdf.len(), || {
                verify_document_timestamp(&sig.contents, &covered, trust)
            })
        } else {
            match parse_cms(&sig.contents) {
                Ok(sd) => match digest_algorithm_of(&sd) {
                    Ok(alg) => {
                        let digest = off_the_executor(pdf.len(), || {
                            let mut hasher = alg.hasher();
                            for part in &covered {
                                hasher.update(part);
                            }
                            hasher.finish()
                        });
                        verify_signed_data(&sd, &digest, trust, db, &sig.sub_filter).await
                    }
                    Err(e) => broken(None, &sig.sub_filter, Reason::Malformed, &e.to_string()),
                },
                Err(e) => broken(None, &sig.sub_filter, Reason::Malformed, &e.to_string()),
            }
        };
        report.field = Some(sig.field.clone());
        if report.claimed_time.is_none() {
            report.claimed_time = sig.claimed_time.clone();
        }
        if !sig.ranges_sane {
            report.intact = false;
            report.verdict = Verdict::Invalid;
            report.because(
                Reason::ByteRangeIncomplete,
                "the byte range does not cover the file around the signature",
            );
        }
        report.covers_whole_document = Some(sig.covered_end == pdf.len());
        for end in revision_ends.iter().filter(|e| **e > sig.covered_end) {
            let start = revision_ends
                .iter()
                .filter(|e| *e < end)
                .max()
                .copied()
                .unwrap_or(0);
            let revision = &pdf[start..*end];
            let what = if let Some(j) = ends.iter().position(|e| e == end) {
                if signatures[j].doc_timestamp {
                    "a document time-stamp"
                } else {
                    "a later signature"
                }
            } else if find(revision, b"/DSS").is_some() {
                "validation data (DSS)"
            } else {
                "other changes"
            };
            report.changes_after.push(what.to_owned());
        }
        if report.verdict == Verdict::Valid
            && report.changes_after.iter().any(|c| c == "other changes")
        {
            report.verdict = Verdict::Indeterminate;
            report.because(Reason::ChangedAfterSigning, "the document was changed after this signature (not by a signature, time-stamp or validation data)");
        }
        reports.push(report);
    }
    Report::from_signatures("pdf", reports)
}

fn verify_document_timestamp(contents: &[u8], covered: &[&[u8]], trust: &Trust) -> SignatureReport {
    let mut r = broken(None, "ETSI.RFC3161", Reason::Malformed, "");
    r.kind = "document-timestamp";
    let token =
        match first_tlv(contents).and_then(|d| ContentInfo::from_der(d).map_err(crate::der_err)) {
            Ok(t) => t,
            Err(e) => {
                r.because(Reason::Malformed, e.to_string());
                return r;
            }
        };
    let mut reader = covered
        .iter()
        .fold(Box::new(std::io::empty()) as Box<dyn Read>, |r, part| {
            Box::new(r.chain(*part))
        });
    match kexin_timestamp::verify::verify_token(
        &token,
        &mut reader,
        &trust.intermediates,
        &trust.roots,
    ) {
        Ok(v) => {
            r.intact = true;
            r.trusted = true;
            r.signer = Some(v.tsa_subject.clone());
            r.chain = v.chain.clone();
            r.timestamp = Some(TimeStampInfo {
                time: rfc3339(v.gen_time_unix),
                tsa: v.tsa_subject,
                valid: true,
                problem: None,
            });
            r.status_now = "not checked (time-stamp)".into();
            r.verdict = Verdict::Valid;
            r.because(
                Reason::TimestampValid,
                "document time-stamp intact and trusted",
            );
        }
        Err(kexin_timestamp::verify::TokenError::ImprintMismatch) => {
            r.because(
                Reason::ChangedAfterTimestamp,
                "the document was changed after its time-stamp",
            );
        }
        Err(e @ kexin_timestamp::verify::TokenError::Untrusted(_)) => {
            r.intact = true;
            r.verdict = Verdict::Indeterminate;
            r.because(Reason::TimestampUntrusted, e.to_string());
        }
        Err(e) => r.because(Reason::Malformed, e.to_string()),
    }
    r
}

struct PdfSignature {
    field: String,
    sub_filter: String,
    doc_timestamp: bool,
    contents: Vec<u8>,
    ranges: Vec<(usize, usize)>,
    covered_end: usize,
    ranges_sane: bool,
    claimed_time: Option<String>,
}

fn pdf_signatures(pdf: &[u8]) -> Result<Vec<PdfSignature>, Error> {
    use lopdf::Object;
    let doc = lopdf::Document::load_mem(pdf)
        .map_err(|e| Error::UnsupportedPdf(format!("unreadable: {e}")))?;
    let resolve = |o: &Object| -> Object {
        doc.dereference(o)
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|_| o.clone())
    };
    doc.catalog()
        .map_err(|_| Error::UnsupportedPdf("no catalog".into()))?;
    let mut out = Vec::new();
    for field in signature_fields(&doc) {
        let dict = field.dict;
        let Ok(v) = dict.get(b"V").map(&resolve) else {
            continue;
        };
        let Ok(sig) = v.as_dict() else {
            continue;
        };
        let contents = sig
            .get(b"Contents")
            .and_then(Object::as_str)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let numbers: Vec<usize> = sig
            .get(b"ByteRange")
            .and_then(Object::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_i64().ok())
                    .map(|n| n.max(0) as usize)
                    .collect()
            })
            .unwrap_or_default();
        let ranges: Vec<(usize, usize)> = numbers.chunks_exact(2).map(|c| (c[0], c[1])).collect();
        let covered_end = ranges.last().map(|(s, l)| s + l).unwrap_or(0);
        let ranges_sane = ranges.len() == 2
            && ranges[0].0 == 0
            && ranges[0].1 < ranges[1].0
            && covered_end <= pdf.len()
            && pdf.get(ranges[0].1) == Some(&b'<')
            && pdf.get(ranges[1].0 - 1) == Some(&b'>');
        let sub_filter = sig
            .get(b"SubFilter")
            .and_then(Object::as_name)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        out.push(PdfSignature {
            field: field.name,
            doc_timestamp: sub_filter == "ETSI.RFC3161",
            sub_filter,
            contents,
            ranges,
            covered_end,
            ranges_sane,
            claimed_time: sig
                .get(b"M")
                .and_then(Object::as_str)
                .ok()
                .and_then(pdf_time),
        });
    }
    out.sort_by_key(|s| s.covered_end);
    Ok(out)
}

/// Offsets just after each %%EOF: where each revision ends.
fn revision_ends(pdf: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut from = 0;
    while let Some(at) = find(&pdf[from..], b"%%EOF") {
        let mut end = from + at + 5;
        while end < pdf.len() && matches!(pdf[end], b'\r' | b'\n') {
            end += 1;
        }
        ends.push(end);
        from = from + at + 5;
    }
    ends
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// D:YYYYMMDDHHmmSS… → RFC 3339 (UTC offsets other than Z are ignored).
fn pdf_time(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?.strip_prefix("D:")?;
    let d = |r: std::ops::Range<usize>| s.get(r).filter(|p| p.bytes().all(|b| b.is_ascii_digit()));
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        d(0..4)?,
        d(4..6).unwrap_or("01"),
        d(6..8).unwrap_or("01"),
        d(8..10).unwrap_or("00"),
        d(10..12).unwrap_or("00"),
        d(12..14).unwrap_or("00")
    ))
}

fn rfc3339(secs: u64) -> String {
    let date = crate::pdf::pdf_date(secs);
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[2..6],
        &date[6..8],
        &date[8..10],
        &date[10..12],
        &date[12..14],
        &date[14..16]
    )
}

#[derive(Clone, Debug, Serialize)]
pub struct LicenseReport {
    pub verdict: Verdict,
    pub reason_code: Reason,
    pub reason: String,
    /// The license's key facts, from the signed payload.
    pub license: Option<crate::license::Claims>,
    pub seal: Option<SealInfo>,
    pub signature_valid: bool,
    pub seal_certificate: String,
    /// active, revoked (with time and reason), or not registered.
    pub registry_status: String,
    pub within_validity: Option<bool>,
}

impl LicenseReport {
    fn because(&mut self, code: Reason, detail: impl Into<String>) {
        self.reason_code = code;
        self.reason = detail.into();
    }
}

/// A license QR payload (the JWS, or the verify URL carrying it), checked
/// against the seal certificate it names, the CA and the license registry.
pub async fn verify_license(text: &str, trust: &Trust, db: &Database) -> LicenseReport {
    let mut r = LicenseReport {
        verdict: Verdict::Invalid,
        reason_code: Reason::NotALicense,
        reason: String::new(),
        license: None,
        seal: None,
        signature_valid: false,
        seal_certificate: "unknown".into(),
        registry_status: "not registered".into(),
        within_validity: None,
    };
    let jws = crate::license::payload_from(text);
    let Some(kid) = crate::license::payload_kid(jws) else {
        r.because(Reason::NotALicense, "not a license payload");
        return r;
    };
    let record = match db.certificate(&kid).await {
        Ok(Some(rec)) => rec,
        _ => {
            r.verdict = Verdict::Indeterminate;
            r.because(
                Reason::UnknownSeal,
                "the seal that signed this license is unknown here",
            );
            return r;
        }
    };
    let Some(cert) = record
        .der
        .as_deref()
        .and_then(|d| Certificate::from_der(d).ok())
    else {
        r.because(Reason::LicenseForged, "the seal certificate is unreadable");
        return r;
    };
    let claims = match crate::license::check_payload(jws, &cert) {
        Ok(c) => c,
        Err(e) => {
            r.because(
                Reason::LicenseForged,
                format!("the license payload is not genuine: {e}"),
            );
            return r;
        }
    };
    r.signature_valid = true;
    if let Ok(Some(seal)) = db.seal_by_certificate(&kid).await {
        r.seal = Some(SealInfo {
            name: seal.name,
            organization: seal.organization,
            uscc: seal.uscc,
            kind: seal.kind,
            status: seal.status,
        });
    }
    let now = crate::registry::now();
    r.seal_certificate =
        match kexin_ca::verify::build_chain(&cert, &trust.intermediates, &trust.roots, now) {
            Err(e) => format!("untrusted: {e}"),
            Ok(_) => record.status.clone(),
        };
    let today = rfc3339(now)[..10].to_owned();
    r.within_validity = Some(
        claims.f.as_str() <= today.as_str()
            && claims.u.as_deref().is_none_or(|u| today.as_str() <= u),
    );
    let registered = db.license(&claims.no).await.ok().flatten();
    r.license = Some(claims);
    let (verdict, code, why) = match registered {
        None => (
            Verdict::Invalid,
            Reason::NotRegistered,
            "this license is not in the registry".into(),
        ),
        Some(l) if l.status == "revoked" => {
            r.registry_status = format!(
                "revoked at {} ({})",
                rfc3339(l.revoked_at.unwrap_or(0) as u64),
                l.revocation_reason.unwrap_or_default()
            );
            (
                Verdict::Invalid,
                Reason::LicenseRevoked,
                "this license has been revoked".into(),
            )
        }
        Some(l)
            if l.payload_digest != hex::encode(DigestAlgorithm::Sha256.digest(jws.as_bytes())) =>
        {
            r.registry_status = l.status;
            (
                Verdict::Invalid,
                Reason::PayloadMismatch,
                "this payload is not the one the registry holds for the number".into(),
            )
        }
        Some(l) => {
            r.registry_status = l.status;
            if r.seal_certificate != "issued" {
                (
                    Verdict::Indeterminate,
                    Reason::SealCertificateNotIssued,
                    format!(
                        "the seal's certificate is {}; rely on the sealed PDF's time-stamp",
                        r.seal_certificate
                    ),
                )
            } else if r.within_validity == Some(false) {
                (
                    Verdict::Invalid,
                    Reason::OutsideValidity,
                    "the license is outside its validity period".into(),
                )
            } else {
                (
                    Verdict::Valid,
                    Reason::LicenseValid,
                    "genuine, registered and in force".into(),
                )
            }
        }
    };
    r.verdict = verdict;
    r.because(code, why);
    r
}
