//! Electronic licenses (电子证照): structured data turned into a PDF with a
//! QR code, sealed with a certification signature, and registered so that
//! a verifier can learn that a license was revoked.
//!
//! The QR code carries the portal URL with a compact JWS of the license's
//! key fields signed by the seal's key (`alg` ES256/ES384/EdDSA/RS256/PS256,
//! or `SM2` for SM2 seals, which no JOSE registry names yet), so a phone
//! that opens it gets the online answer, and software holding the seal
//! certificate can check the payload offline. The payload also binds a
//! SHA-256 of every field as issued.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use kexin_ca::storage::{Database, LicenseRow};
use kexin_hsm::{KeyStore, SignatureAlgorithm};
use lopdf::{Dictionary, Object};
use serde::{Deserialize, Serialize};
use x509_cert::Certificate;

use crate::fonts;
use crate::pdf::real;
use crate::registry::Seal;
use crate::Error;

/// What an authority issues, as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseData {
    /// E.g. 营业执照, 食品经营许可证.
    #[serde(rename = "type")]
    pub kind: String,
    pub number: String,
    pub holder: String,
    /// The issuing authority (发证机关).
    pub authority: String,
    /// YYYY-MM-DD.
    pub valid_from: String,
    /// YYYY-MM-DD; absent for licenses without end (长期).
    pub valid_until: Option<String>,
    /// Further fields in display order, e.g. `[["法定代表人", "张三"]]`.
    #[serde(default)]
    pub fields: Vec<(String, String)>,
}

impl LicenseData {
    pub fn check(&self) -> Result<(), Error> {
        let text = |what: &str, v: &str| {
            if v.trim().is_empty() || v.chars().count() > 200 || v.chars().any(char::is_control) {
                Err(Error::InvalidInput(format!(
                    "{what} is 1 to 200 printable characters"
                )))
            } else {
                Ok(())
            }
        };
        text("type", &self.kind)?;
        text("holder", &self.holder)?;
        text("authority", &self.authority)?;
        if self.number.is_empty()
            || self.number.len() > 64
            || !self
                .number
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::InvalidInput(
                "number is 1 to 64 letters, digits, - or _".into(),
            ));
        }
        check_date(&self.valid_from)?;
        if let Some(u) = &self.valid_until {
            check_date(u)?;
            if u < &self.valid_from {
                return Err(Error::InvalidInput(
                    "valid_until is before valid_from".into(),
                ));
            }
        }
        if self.fields.len() > 30 {
            return Err(Error::InvalidInput("at most 30 further fields".into()));
        }
        for (k, v) in &self.fields {
            text("a field name", k)?;
            text("a field value", v)?;
        }
        Ok(())
    }
}

fn check_date(d: &str) -> Result<(), Error> {
    let ok = d.len() == 10
        && time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).is_ok();
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{d:?} is not a YYYY-MM-DD date"
        )))
    }
}

/// The signed QR payload's claims (short names keep the QR small).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub v: u8,
    /// number
    pub no: String,
    /// type
    pub t: String,
    /// holder
    pub h: String,
    /// authority
    pub a: String,
    /// valid from / until
    pub f: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub u: Option<String>,
    /// seal name
    pub s: String,
    /// The first 128 bits of the SHA-256 (hex) of the full license data
    /// as issued: binds every field without carrying them.
    pub d: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    /// Serial of the seal certificate.
    kid: String,
}

fn jws_alg(sig: SignatureAlgorithm) -> &'static str {
    match sig {
        SignatureAlgorithm::EcdsaSha256 => "ES256",
        SignatureAlgorithm::EcdsaSha384 => "ES384",
        SignatureAlgorithm::Ed25519 => "EdDSA",
        SignatureAlgorithm::Sm2Sm3 => "SM2",
        SignatureAlgorithm::RsaPssSha256 => "PS256",
        _ => "RS256",
    }
}

/// ECDSA and SM2 signatures go into JWS as r‖s, not DER.
fn raw_len(sig: SignatureAlgorithm) -> Option<usize> {
    match sig {
        SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::Sm2Sm3 => Some(32),
        SignatureAlgorithm::EcdsaSha384 => Some(48),
        _ => None,
    }
}

/// The compact JWS of `claims`, signed with the seal's key.
pub async fn sign_claims(
    store: Arc<dyn KeyStore>,
    seal: &Seal,
    signature: SignatureAlgorithm,
    claims: &Claims,
) -> Result<String, Error> {
    let header = Header {
        alg: jws_alg(signature).into(),
        kid: seal.row.certificate_serial.clone(),
    };
    let enc = |v: &[u8]| B64URL.encode(v);
    let json = |v: serde_json::Result<Vec<u8>>| v.map_err(|e| Error::Encoding(e.to_string()));
    let signing_input = format!(
        "{}.{}",
        enc(&json(serde_json::to_vec(&header))?),
        enc(&json(serde_json::to_vec(claims))?)
    );
    let input = signing_input.clone().into_bytes();
    let der = kexin_hsm::sign_async(&store, &seal.row.key_label, signature, input).await?;
    let sig = match raw_len(signature) {
        Some(n) => kexin_hsm::algorithm::ecdsa_der_to_raw(&der, n)?,
        None => der,
    };
    Ok(format!("{signing_input}.{}", enc(&sig)))
}

/// Checks a compact JWS against `certificate` (found by the header's kid).
pub fn check_payload(jws: &str, certificate: &Certificate) -> Result<Claims, Error> {
    let bad = |m: &str| Error::InvalidInput(format!("license payload: {m}"));
    let mut parts = jws.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a compact JWS"));
    };
    let header: Header = serde_json::from_slice(&B64URL.decode(h).map_err(|_| bad("header"))?)
        .map_err(|_| bad("header"))?;
    let claims: Claims = serde_json::from_slice(&B64URL.decode(c).map_err(|_| bad("claims"))?)
        .map_err(|_| bad("claims"))?;
    let sig = B64URL.decode(s).map_err(|_| bad("signature"))?;
    let key =
        kexin_hsm::KeyAlgorithm::from_spki(&certificate.tbs_certificate.subject_public_key_info)?;
    let algorithm = key.default_signature();
    if header.alg != jws_alg(algorithm) {
        return Err(bad("alg does not fit the seal's key"));
    }
    let der = match raw_len(algorithm) {
        Some(_) => kexin_hsm::algorithm::ecdsa_raw_to_der(&sig)?,
        None => sig,
    };
    kexin_ca::verify::verify_signature(
        &certificate.tbs_certificate.subject_public_key_info,
        &algorithm.algorithm_identifier(),
        format!("{h}.{c}").as_bytes(),
        &der,
        &[kexin_hsm::SM2_DEFAULT_ID],
    )
    .map_err(|e| bad(&e.to_string()))?;
    Ok(claims)
}

/// The kid (seal certificate serial) of a compact JWS, unverified.
pub fn payload_kid(jws: &str) -> Option<String> {
    let h = jws.trim().split('.').next()?;
    let header: Header = serde_json::from_slice(&B64URL.decode(h).ok()?).ok()?;
    Some(header.kid)
}

/// The JWS in a verify URL (`…/verify/license?t=JWS`) or the JWS itself.
pub fn payload_from(text: &str) -> &str {
    let text = text.trim();
    match text.split_once("t=") {
        Some((_, rest)) => rest.split('&').next().unwrap_or(rest),
        None => text,
    }
}

pub fn claims_for(data: &LicenseData, seal: &Seal) -> Result<Claims, Error> {
    let full = serde_json::to_vec(data).map_err(|e| Error::Encoding(e.to_string()))?;
    Ok(Claims {
        v: 1,
        no: data.number.clone(),
        t: data.kind.clone(),
        h: data.holder.clone(),
        a: data.authority.clone(),
        f: data.valid_from.clone(),
        u: data.valid_until.clone(),
        s: seal.row.name.clone(),
        d: hex::encode(&kexin_ca::cms::DigestAlgorithm::Sha256.digest(&full)[..16]),
    })
}

pub fn registry_row(
    data: &LicenseData,
    seal: &Seal,
    jws: &str,
    issued_at: i64,
) -> Result<LicenseRow, Error> {
    Ok(LicenseRow {
        number: data.number.clone(),
        kind: data.kind.clone(),
        holder: data.holder.clone(),
        authority: data.authority.clone(),
        seal: seal.row.name.clone(),
        valid_from: data.valid_from.clone(),
        valid_until: data.valid_until.clone(),
        data: serde_json::to_string(data).map_err(|e| Error::Encoding(e.to_string()))?,
        payload_digest: hex::encode(kexin_ca::cms::DigestAlgorithm::Sha256.digest(jws.as_bytes())),
        status: "active".into(),
        revoked_at: None,
        revocation_reason: None,
        issued_at,
    })
}

/// Where the seal goes on the license page (lower right).
pub const SEAL_PLACEMENT: (f64, f64, f64) = (395.0, 90.0, 130.0);

/// The license as a one-page A4 PDF: text in fonts the reader supplies
/// ([`fonts`]), and the QR code drawn as vector squares.
pub fn render_pdf(data: &LicenseData, verify_url: &str) -> Result<Vec<u8>, Error> {
    let qr = qrcode::QrCode::with_error_correction_level(verify_url.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| Error::InvalidInput(format!("QR code: {e}")))?;
    let mut content = String::new();
    let line = |content: &mut String, text: &str, x: f64, y: f64, size: f64| {
        content.push_str(&format!(
            "BT {} {} Td {}ET\n",
            real(x),
            real(y),
            fonts::text(text, size)
        ));
    };
    let title_size = 30.0;
    let title_width = fonts::width_in_ems(&data.kind) * title_size;
    line(
        &mut content,
        &data.kind,
        ((595.0 - title_width) / 2.0).max(40.0),
        740.0,
        title_size,
    );
    let mut rows = vec![
        ("证照编号 Number".to_owned(), data.number.clone()),
        ("持证主体 Holder".to_owned(), data.holder.clone()),
        ("发证机关 Authority".to_owned(), data.authority.clone()),
        (
            "有效期 Valid".to_owned(),
            format!(
                "{} — {}",
                data.valid_from,
                data.valid_until.as_deref().unwrap_or("长期")
            ),
        ),
    ];
    rows.extend(data.fields.iter().cloned());
    let mut y = 660.0;
    for (k, v) in &rows {
        line(&mut content, k, 70.0, y, 12.0);
        line(&mut content, v, 230.0, y, 14.0);
        y -= 30.0;
    }
    // The QR code, 4-module quiet zone, lower left.
    let width = qr.width();
    let size = 180.0;
    let module = size / (width as f64 + 8.0);
    let (ox, oy) = (60.0, 70.0);
    content.push_str("q 1 1 1 rg ");
    content.push_str(&format!(
        "{} {} {} {} re f 0 0 0 rg\n",
        real(ox),
        real(oy),
        real(size),
        real(size)
    ));
    for (i, colour) in qr.to_colors().iter().enumerate() {
        if *colour == qrcode::Color::Dark {
            let (col, row) = ((i % width) as f64, (i / width) as f64);
            content.push_str(&format!(
                "{} {} {} {} re\n",
                real(ox + (col + 4.0) * module),
                real(oy + size - (row + 5.0) * module),
                real(module),
                real(module)
            ));
        }
    }
    content.push_str("f Q\n");
    line(&mut content, "扫码核验 Scan to verify", ox, oy - 16.0, 9.0);

    let mut objects: Vec<Vec<u8>> = Vec::new();
    let push = |objects: &mut Vec<Vec<u8>>, o: Object| {
        let mut b = Vec::new();
        crate::pdf::write_object(&o, &mut b);
        objects.push(b);
    };
    let name = |n: &str| Object::Name(n.as_bytes().to_vec());
    let mut catalog = Dictionary::new();
    catalog.set("Type", name("Catalog"));
    catalog.set("Pages", Object::Reference((2, 0)));
    push(&mut objects, Object::Dictionary(catalog));
    let mut pages = Dictionary::new();
    pages.set("Type", name("Pages"));
    pages.set("Kids", Object::Array(vec![Object::Reference((3, 0))]));
    pages.set("Count", Object::Integer(1));
    push(&mut objects, Object::Dictionary(pages));
    let mut resources = Dictionary::new();
    resources.set("Font", Object::Dictionary(fonts::resources((5, 0))));
    let mut page = Dictionary::new();
    page.set("Type", name("Page"));
    page.set("Parent", Object::Reference((2, 0)));
    page.set(
        "MediaBox",
        Object::Array(vec![0.into(), 0.into(), 595.into(), 842.into()]),
    );
    page.set("Contents", Object::Reference((4, 0)));
    page.set("Resources", Object::Dictionary(resources));
    push(&mut objects, Object::Dictionary(page));
    objects.push(
        format!(
            "<</Length {}>>\nstream\n{content}\nendstream",
            content.len() + 1
        )
        .into_bytes(),
    );
    push(
        &mut objects,
        Object::Dictionary(fonts::song_light_descriptor()),
    );

    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f\r\n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n\r\n").as_bytes());
    }
    let id = hex::encode(&kexin_ca::cms::DigestAlgorithm::Sha256.digest(&out)[..16]);
    out.extend_from_slice(
        format!(
            "trailer\n<</Size {} /Root 1 0 R /ID [<{id}> <{id}>]>>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    Ok(out)
}

/// A license's standing, for a report: the registry's word.
pub async fn registry_status(db: &Database, number: &str) -> Result<Option<LicenseRow>, Error> {
    Ok(db.license(number).await?)
}
