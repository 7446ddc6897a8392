//! PAdES: sealing a PDF by incremental update (ETSI EN 319 142-1 baseline,
//! SubFilter ETSI.CAdES.detached) with a visible seal, and the B-LT / B-LTA
//! extensions (a DSS dictionary with certificates, OCSP responses and CRLs;
//! a document time-stamp over everything).
//!
//! Invariants: the original bytes are never changed, only appended to, so
//! every earlier signature still covers what it covered; the signature's
//! ByteRange covers the whole file except its own Contents.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::Compression;
use kexin_ca::cms::{DigestAlgorithm, Hasher};
use kexin_ca::storage::SealRow;
use kexin_timestamp::log::Durability;
use lopdf::{Dictionary, Object, ObjectId, StringFormat};

use crate::fonts;
use crate::pdf::{
    off_the_executor, pdf_date, real, signature_fields, text_string, write_object,
    IncrementalUpdate, PdfFile, SignatureField,
};
use crate::registry::{now, Seal};
use crate::signer::{Level, SealSigner, SignOptions};
use crate::validation::ValidationData;
use crate::Error;

/// Where the visible seal goes.
#[derive(Clone, Debug)]
pub struct Placement {
    /// 1-based; the last page when `None`.
    pub page: Option<u32>,
    pub x: f64,
    pub y: f64,
    /// Width and height of the seal image, in points.
    pub size: f64,
}

const BYTE_RANGE_PLACEHOLDER: &[u8] = b"/ByteRange [0 0000000000 0000000000 0000000000]";

/// Room for the CMS in /Contents, in bytes (hex doubles it).
fn contents_room(level: Level) -> usize {
    if level >= Level::BT {
        24 * 1024
    } else {
        12 * 1024
    }
}

/// A seal's image as the PDF image XObjects of its appearance: RGB and
/// alpha, each deflated. Encoding it is most of the cost of a visible
/// seal, and a seal's image never changes, so the service keeps one per seal.
pub struct SealImage {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
    alpha: Option<Vec<u8>>,
    /// Kexin's default image, whose ring the organization's name goes
    /// inside; an operator's image carries its own lettering.
    default: bool,
}

impl SealImage {
    pub fn encode(png: &[u8]) -> Result<Self, Error> {
        let image = crate::image::decode(png)?;
        Ok(Self {
            default: crate::image::is_default_seal(png),
            width: image.width,
            height: image.height,
            rgb: deflate(&image.rgb)?,
            alpha: image.alpha.as_deref().map(deflate).transpose()?,
        })
    }
}

/// The hash of a document taken as its bytes arrived (over the network),
/// so that sealing it hashes only the few kilobytes it appends: PAdES
/// covers the original bytes whole, as the first part of the ByteRange.
/// Used only for a document of `length` bytes and a seal whose digest is
/// `algorithm`; any other is hashed anew.
pub struct ReceivedDigest {
    algorithm: DigestAlgorithm,
    hasher: Hasher,
    length: usize,
}

impl ReceivedDigest {
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        Self {
            algorithm,
            hasher: algorithm.hasher(),
            length: 0,
        }
    }

    /// Takes the next bytes of the document, in order.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.length += bytes.len();
    }

    /// The state over `original`, if it is the one this hashed with `algorithm`.
    fn matching(self, original: &[u8], algorithm: DigestAlgorithm) -> Option<Hasher> {
        (self.algorithm == algorithm && self.length == original.len()).then_some(self.hasher)
    }
}

/// A sealed PDF: the original bytes followed by `appended` (the
/// incremental updates), and the digest the seal signed (the signature's
/// messageDigest over the byte range), for the audit record.
pub struct Sealed {
    pub appended: Vec<u8>,
    pub signed_digest: Vec<u8>,
}

impl Sealed {
    /// The whole sealed document, for callers that want one buffer.
    pub fn document(&self, original: &[u8]) -> Vec<u8> {
        [original, &self.appended].concat()
    }
}

/// Seals `pdf` with `seal`, whose image is `image`.
#[allow(clippy::too_many_arguments)]
pub async fn seal_pdf(
    pdf: &[u8],
    received: Option<ReceivedDigest>,
    signer: &SealSigner,
    seal: &Seal,
    image: &SealImage,
    placement: &Placement,
    certify: bool,
    opts: &SignOptions<'_>,
) -> Result<Sealed, Error> {
    let sane = (16.0..=600.0).contains(&placement.size)
        && placement.x.is_finite()
        && placement.y.is_finite();
    if !sane {
        return Err(Error::InvalidInput(
            "the seal is 16 to 600 points wide, at a finite position".into(),
        ));
    }
    let digest_algorithm = signer.digest_algorithm();
    let covered = off_the_executor(pdf.len(), || {
        lay_out_signature(
            pdf,
            received,
            &seal.row,
            image,
            placement,
            certify,
            opts.level,
            digest_algorithm,
        )
    })?;
    let (signed, signed_digest) = fill_signature(covered, |digest| {
        let sign_opts = SignOptions {
            signing_time: false,
            level: opts.level.min(Level::BT),
            tsa: opts.tsa,
            token_durability: opts.token_durability,
            validation: None,
            requester: opts.requester,
        };
        async move { signer.sign_digest(&digest, &sign_opts).await }
    })
    .await?;
    if opts.level < Level::BLT {
        return Ok(Sealed {
            appended: signed,
            signed_digest,
        });
    }
    // Validation data and the document time-stamp are further updates
    // that read the signed document, so from here it is one buffer.
    let validation = opts
        .validation
        .ok_or_else(|| Error::InvalidInput("b-lt needs validation data".into()))?;
    let mut whole = off_the_executor(pdf.len(), || -> Result<Vec<u8>, Error> {
        let mut whole = [pdf, &signed].concat();
        let dss = add_dss(&whole, validation)?;
        whole.extend_from_slice(&dss);
        Ok(whole)
    })?;
    if opts.level >= Level::BLTA {
        let tsa = opts
            .tsa
            .ok_or_else(|| Error::InvalidInput("b-lta needs the TSA".into()))?;
        let stamp = document_timestamp(&whole, tsa, opts.requester, opts.token_durability).await?;
        whole.extend_from_slice(&stamp);
    }
    whole.drain(..pdf.len());
    Ok(Sealed {
        appended: whole,
        signed_digest,
    })
}

/// The update that adds the seal's signature field and its appearance to
/// `pdf`, with the ByteRange filled in and the covered bytes hashed: the
/// CPU-heavy part of sealing (tens of milliseconds for 50 MB).
#[allow(clippy::too_many_arguments)]
fn lay_out_signature(
    pdf: &[u8],
    received: Option<ReceivedDigest>,
    seal: &SealRow,
    image: &SealImage,
    placement: &Placement,
    certify: bool,
    level: Level,
    digest_algorithm: DigestAlgorithm,
) -> Result<Covered, Error> {
    let file = PdfFile::parse(pdf)?;
    let existing = signature_fields(&file.doc);
    if certify && !existing.is_empty() {
        return Err(Error::UnsupportedPdf(
            "a certification signature must be the document's first signature".into(),
        ));
    }
    let mut update = IncrementalUpdate::new(&file);
    let (_, page_id) = file.page(placement.page)?;
    // After a certification signature, validators (Adobe, pyHanko) accept
    // new signature fields only if they are invisible.
    let visible = !is_certified(&file);

    let signed_at = now();
    let appearance = if visible {
        Some(seal_appearance(
            &mut update,
            seal,
            image,
            placement,
            signed_at,
        ))
    } else {
        None
    };
    let sig_id = update.allocate();
    let mut sig = Dictionary::new();
    sig.set("Type", Object::Name(b"Sig".to_vec()));
    sig.set("Filter", Object::Name(b"Adobe.PPKLite".to_vec()));
    sig.set("SubFilter", Object::Name(b"ETSI.CAdES.detached".to_vec()));
    sig.set(
        "M",
        Object::String(pdf_date(signed_at).into_bytes(), StringFormat::Literal),
    );
    sig.set("Name", text_string(&seal.name));
    sig.set(
        "Reason",
        text_string(&format!("{} ({})", seal.organization, seal.kind)),
    );
    if certify {
        let mut params = Dictionary::new();
        params.set("Type", Object::Name(b"TransformParams".to_vec()));
        params.set("P", Object::Integer(2));
        params.set("V", Object::Name(b"1.2".to_vec()));
        let mut reference = Dictionary::new();
        reference.set("Type", Object::Name(b"SigRef".to_vec()));
        reference.set("TransformMethod", Object::Name(b"DocMDP".to_vec()));
        reference.set("TransformParams", Object::Dictionary(params));
        sig.set(
            "Reference",
            Object::Array(vec![Object::Dictionary(reference)]),
        );
    }
    update.put_raw(sig_id, signature_dict(&sig, contents_room(level)));

    let rect = if visible {
        [
            placement.x,
            placement.y,
            placement.x + placement.size,
            placement.y + placement.size + CAPTION_HEIGHT,
        ]
    } else {
        [0.0; 4]
    };
    let field_name = unused_field_name("KexinSeal", &existing);
    let mut catalog_extra = Dictionary::new();
    if certify {
        let mut perms = Dictionary::new();
        perms.set("DocMDP", Object::Reference(sig_id));
        catalog_extra.set("Perms", Object::Dictionary(perms));
    }
    add_field(
        &file,
        &mut update,
        &field_name,
        sig_id,
        page_id,
        rect,
        appearance,
        catalog_extra,
    )?;
    cover(pdf, received, update.appended_to(pdf), digest_algorithm)
}

/// Whether the document carries a certification (DocMDP) signature.
fn is_certified(file: &PdfFile) -> bool {
    file.doc
        .catalog()
        .ok()
        .and_then(|c| c.get(b"Perms").ok())
        .and_then(|p| file.resolve(p).as_dict().ok())
        .is_some_and(|p| p.has(b"DocMDP"))
}

/// `prefix` numbered after the document's signature fields, skipping any
/// name one of them already has (names must be unique in a form).
fn unused_field_name(prefix: &str, existing: &[SignatureField]) -> String {
    let taken = |name: &String| existing.iter().any(|field| field.name == *name);
    (existing.len() + 1..)
        .map(|n| format!("{prefix}{n}"))
        .find(|name| !taken(name))
        .unwrap_or_else(|| prefix.to_owned())
}

/// The signature dictionary with fixed-width placeholders for ByteRange
/// and Contents, filled in once the file's final length is known.
fn signature_dict(sig: &Dictionary, room: usize) -> Vec<u8> {
    let mut body = Vec::new();
    write_object(&Object::Dictionary(sig.clone()), &mut body);
    body.truncate(body.len() - 2);
    body.extend_from_slice(BYTE_RANGE_PLACEHOLDER);
    body.extend_from_slice(b"/Contents <");
    body.resize(body.len() + room * 2, b'0');
    body.extend_from_slice(b">>>");
    body
}

/// A prepared update whose ByteRange is filled in and whose covered bytes
/// are hashed, waiting for the signature to go into its Contents.
struct Covered {
    tail: Vec<u8>,
    contents_start: usize,
    contents_end: usize,
    digest: Vec<u8>,
}

/// Patches the ByteRange of the signature in `tail` (the update appended
/// to `original`) and hashes the covered bytes with `digest`. Offsets in
/// the ByteRange are of the whole document.
fn cover(
    original: &[u8],
    received: Option<ReceivedDigest>,
    mut tail: Vec<u8>,
    digest: DigestAlgorithm,
) -> Result<Covered, Error> {
    let base = original.len();
    let at = memchr::memmem::find(&tail, BYTE_RANGE_PLACEHOLDER)
        .ok_or_else(|| Error::Encoding("signature placeholder not found".into()))?;
    // Positions in the tail; the ByteRange counts from the document's start.
    let contents_start = at + BYTE_RANGE_PLACEHOLDER.len() + b"/Contents ".len();
    let contents_end = contents_start
        + memchr::memchr(b'>', &tail[contents_start..])
            .ok_or_else(|| Error::Encoding("unterminated Contents".into()))?
        + 1;
    let byte_range = format!(
        "/ByteRange [0 {} {} {}]",
        base + contents_start,
        base + contents_end,
        tail.len() - contents_end
    );
    if byte_range.len() > BYTE_RANGE_PLACEHOLDER.len() {
        return Err(Error::UnsupportedPdf(
            "the document is too large to sign".into(),
        ));
    }
    let padded = format!("{byte_range:<width$}", width = BYTE_RANGE_PLACEHOLDER.len());
    tail[at..at + padded.len()].copy_from_slice(padded.as_bytes());
    // The two covered ranges are hashed in place, not copied; the
    // original bytes, which open the first, only if not hashed already.
    let received = received.and_then(|r| r.matching(original, digest));
    let mut hasher = received.unwrap_or_else(|| {
        let mut hasher = digest.hasher();
        hasher.update(original);
        hasher
    });
    hasher.update(&tail[..contents_start]);
    hasher.update(&tail[contents_end..]);
    Ok(Covered {
        tail,
        contents_start,
        contents_end,
        digest: hasher.finish(),
    })
}

/// Has `sign` make the CMS for the covered digest and writes it into
/// Contents. Returns the finished tail and the digest.
async fn fill_signature<F, Fut>(covered: Covered, sign: F) -> Result<(Vec<u8>, Vec<u8>), Error>
where
    F: FnOnce(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, Error>>,
{
    let Covered {
        mut tail,
        contents_start,
        contents_end,
        digest,
    } = covered;
    let cms = sign(digest.clone()).await?;
    let hex = hex::encode_upper(&cms);
    let room = contents_end - contents_start - 2;
    if hex.len() > room {
        return Err(Error::Encoding(format!(
            "the signature ({} bytes) does not fit the {} bytes reserved",
            cms.len(),
            room / 2
        )));
    }
    tail[contents_start + 1..contents_start + 1 + hex.len()].copy_from_slice(hex.as_bytes());
    Ok((tail, digest))
}

/// Adds a signature field (a merged field and widget) pointing at
/// `sig_id` to the page and the AcroForm, with `catalog_extra` entries
/// added to the catalog.
#[allow(clippy::too_many_arguments)]
fn add_field(
    file: &PdfFile,
    update: &mut IncrementalUpdate,
    name: &str,
    sig_id: ObjectId,
    page_id: ObjectId,
    rect: [f64; 4],
    appearance: Option<ObjectId>,
    catalog_extra: Dictionary,
) -> Result<(), Error> {
    let field_id = update.allocate();
    let mut field = Dictionary::new();
    field.set("Type", Object::Name(b"Annot".to_vec()));
    field.set("Subtype", Object::Name(b"Widget".to_vec()));
    field.set("FT", Object::Name(b"Sig".to_vec()));
    field.set("T", text_string(name));
    field.set("V", Object::Reference(sig_id));
    // Print + Locked.
    field.set("F", Object::Integer(4 | 128));
    field.set(
        "Rect",
        Object::Array(rect.iter().map(|v| Object::Real(*v as f32)).collect()),
    );
    field.set("P", Object::Reference(page_id));
    if let Some(ap) = appearance {
        let mut ap_dict = Dictionary::new();
        ap_dict.set("N", Object::Reference(ap));
        field.set("AP", Object::Dictionary(ap_dict));
    }
    update.put(field_id, &Object::Dictionary(field));

    // The page's /Annots gains the widget.
    let mut page = file.dict(page_id)?.clone();
    match page.get(b"Annots").ok().cloned() {
        Some(Object::Reference(annots_id)) => {
            let mut annots = file
                .resolve(&Object::Reference(annots_id))
                .as_array()
                .map_err(|_| Error::UnsupportedPdf("/Annots is not an array".into()))?
                .clone();
            annots.push(Object::Reference(field_id));
            update.put(annots_id, &Object::Array(annots));
        }
        Some(Object::Array(mut annots)) => {
            annots.push(Object::Reference(field_id));
            page.set("Annots", Object::Array(annots));
            update.put(page_id, &Object::Dictionary(page));
        }
        _ => {
            page.set("Annots", Object::Array(vec![Object::Reference(field_id)]));
            update.put(page_id, &Object::Dictionary(page));
        }
    }

    // The AcroForm gains the field; the catalog whatever else is asked.
    let root_id = file.root_id()?;
    let mut catalog = file.dict(root_id)?.clone();
    let mut catalog_changed = !catalog_extra.is_empty();
    for (k, v) in catalog_extra.iter() {
        catalog.set(k.clone(), v.clone());
    }
    let add_to_form =
        |form: &mut Dictionary, update: &mut IncrementalUpdate| -> Result<(), Error> {
            match form.get(b"Fields").ok().cloned() {
                Some(Object::Reference(fields_id)) => {
                    let mut fields = file
                        .resolve(&Object::Reference(fields_id))
                        .as_array()
                        .map_err(|_| Error::UnsupportedPdf("/Fields is not an array".into()))?
                        .clone();
                    fields.push(Object::Reference(field_id));
                    update.put(fields_id, &Object::Array(fields));
                }
                Some(Object::Array(mut fields)) => {
                    fields.push(Object::Reference(field_id));
                    form.set("Fields", Object::Array(fields));
                }
                _ => form.set("Fields", Object::Array(vec![Object::Reference(field_id)])),
            }
            form.set("SigFlags", Object::Integer(3));
            Ok(())
        };
    match catalog.get(b"AcroForm").ok().cloned() {
        Some(Object::Reference(form_id)) => {
            let mut form = file.dict(form_id)?.clone();
            add_to_form(&mut form, update)?;
            update.put(form_id, &Object::Dictionary(form));
        }
        Some(Object::Dictionary(mut form)) => {
            add_to_form(&mut form, update)?;
            catalog.set("AcroForm", Object::Dictionary(form));
            catalog_changed = true;
        }
        _ => {
            let mut form = Dictionary::new();
            add_to_form(&mut form, update)?;
            let form_id = update.allocate();
            update.put(form_id, &Object::Dictionary(form));
            catalog.set("AcroForm", Object::Reference(form_id));
            catalog_changed = true;
        }
    }
    if catalog_changed {
        update.put(root_id, &Object::Dictionary(catalog));
    }
    Ok(())
}

/// Room under the seal's image for its caption: the signer's line and the
/// time line.
const CAPTION_HEIGHT: f64 = 22.0;

/// The visible seal: the seal's image with, under it, the sealing
/// organization and the time and certificate serial, as a form XObject.
fn seal_appearance(
    update: &mut IncrementalUpdate,
    seal: &SealRow,
    image: &SealImage,
    placement: &Placement,
    signed_at: u64,
) -> ObjectId {
    let smask = match &image.alpha {
        Some(alpha) => {
            let id = update.allocate();
            update.put_stream(
                id,
                image_dict(image.width, image.height, b"DeviceGray"),
                alpha,
            );
            Some(id)
        }
        None => None,
    };
    let image_id = update.allocate();
    let mut dict = image_dict(image.width, image.height, b"DeviceRGB");
    if let Some(m) = smask {
        dict.set("SMask", Object::Reference(m));
    }
    update.put_stream(image_id, dict, &image.rgb);

    let size = placement.size;
    let serial = &seal.certificate_serial;
    let when = crate::pdf::pdf_date(signed_at);
    let text = format!(
        "Sealed {}-{}-{} {}:{} UTC  cert {}",
        &when[2..6],
        &when[6..8],
        &when[8..10],
        &when[10..12],
        &when[12..14],
        &serial[..serial.len().min(12)]
    );
    // The organization's name, at most 7 points and smaller if it must be
    // to fit the seal's width.
    let organization = &seal.organization;
    let signer_size = match fonts::width_in_ems(organization) {
        ems if ems > 0.0 => ((size - 2.0) / ems).min(7.0),
        _ => 7.0,
    };
    let lettering = if image.default {
        use crate::image::{DEFAULT_RING_INNER, DEFAULT_STAR_OUTER};
        format!(
            "q 0.83 0.12 0.12 rg {}Q\n",
            fonts::around_top(
                organization,
                size / 2.0,
                CAPTION_HEIGHT + size / 2.0,
                (DEFAULT_STAR_OUTER + 0.03) * size,
                (DEFAULT_RING_INNER - 0.01) * size,
            )
        )
    } else {
        String::new()
    };
    let content = format!(
        "q {s} 0 0 {s} 0 {c} cm /Im0 Do Q\n{lettering}\
         BT 0.7 0.1 0.1 rg 1 12 Td {signer}ET\n\
         BT 0.7 0.1 0.1 rg 1 4 Td {time}ET\n",
        s = real(size),
        c = real(CAPTION_HEIGHT),
        signer = fonts::text(organization, signer_size),
        time = fonts::text(&text, 5.5),
    );
    let descriptor = update.allocate();
    update.put(
        descriptor,
        &Object::Dictionary(fonts::song_light_descriptor()),
    );
    let mut xobjects = Dictionary::new();
    xobjects.set("Im0", Object::Reference(image_id));
    let mut resources = Dictionary::new();
    resources.set("XObject", Object::Dictionary(xobjects));
    resources.set("Font", Object::Dictionary(fonts::resources(descriptor)));
    let mut form = Dictionary::new();
    form.set("Type", Object::Name(b"XObject".to_vec()));
    form.set("Subtype", Object::Name(b"Form".to_vec()));
    form.set(
        "BBox",
        Object::Array(vec![
            0.into(),
            0.into(),
            Object::Real(size as f32),
            Object::Real((size + CAPTION_HEIGHT) as f32),
        ]),
    );
    form.set("Resources", Object::Dictionary(resources));
    let ap_id = update.allocate();
    update.put_stream(ap_id, form, content.as_bytes());
    ap_id
}

fn image_dict(w: u32, h: u32, colour: &[u8]) -> Dictionary {
    let mut d = Dictionary::new();
    d.set("Type", Object::Name(b"XObject".to_vec()));
    d.set("Subtype", Object::Name(b"Image".to_vec()));
    d.set("Width", Object::Integer(w as i64));
    d.set("Height", Object::Integer(h as i64));
    d.set("ColorSpace", Object::Name(colour.to_vec()));
    d.set("BitsPerComponent", Object::Integer(8));
    d.set("Filter", Object::Name(b"FlateDecode".to_vec()));
    d
}

fn deflate(data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data)?;
    Ok(e.finish()?)
}

/// B-LT: a DSS dictionary in the catalog with the validation data, in a
/// further incremental update (returned: the bytes to append to `pdf`).
fn add_dss(pdf: &[u8], data: &ValidationData) -> Result<Vec<u8>, Error> {
    use der::Encode;
    let file = PdfFile::parse(pdf)?;
    let mut update = IncrementalUpdate::new(&file);
    let streams = |items: Vec<Vec<u8>>, update: &mut IncrementalUpdate| -> Result<Object, Error> {
        let mut refs = Vec::new();
        for item in items {
            let id = update.allocate();
            let mut d = Dictionary::new();
            d.set("Filter", Object::Name(b"FlateDecode".to_vec()));
            update.put_stream(id, d, &deflate(&item)?);
            refs.push(Object::Reference(id));
        }
        Ok(Object::Array(refs))
    };
    let certs = data
        .certificates
        .iter()
        .map(|c| c.to_der())
        .collect::<Result<Vec<_>, _>>()
        .map_err(crate::der_err)?;
    let mut dss = Dictionary::new();
    dss.set("Certs", streams(certs, &mut update)?);
    dss.set("OCSPs", streams(data.ocsp_responses.clone(), &mut update)?);
    dss.set("CRLs", streams(data.crls.clone(), &mut update)?);
    let dss_id = update.allocate();
    update.put(dss_id, &Object::Dictionary(dss));
    let root_id = file.root_id()?;
    let mut catalog = file.dict(root_id)?.clone();
    catalog.set("DSS", Object::Reference(dss_id));
    update.put(root_id, &Object::Dictionary(catalog));
    Ok(update.appended_to(pdf))
}

/// B-LTA: a document time-stamp (ETSI.RFC3161) over the whole document,
/// DSS included (returned: the bytes to append to `pdf`).
async fn document_timestamp(
    pdf: &[u8],
    tsa: &kexin_timestamp::TimeStampAuthority,
    requester: &str,
    durability: Durability,
) -> Result<Vec<u8>, Error> {
    let sha256 = DigestAlgorithm::Sha256;
    let covered = off_the_executor(pdf.len(), || lay_out_document_timestamp(pdf, sha256))?;
    let (stamped, _) = fill_signature(covered, |digest| async move {
        Ok(tsa
            .stamp(sha256.oid(), &digest, requester, durability)
            .await?)
    })
    .await?;
    Ok(stamped)
}

/// The update that adds a document time-stamp field to `pdf`, covered and
/// hashed.
fn lay_out_document_timestamp(
    pdf: &[u8],
    digest_algorithm: DigestAlgorithm,
) -> Result<Covered, Error> {
    let file = PdfFile::parse(pdf)?;
    let existing = signature_fields(&file.doc);
    let mut update = IncrementalUpdate::new(&file);
    let (_, page_id) = file.page(Some(1))?;
    let sig_id = update.allocate();
    let mut sig = Dictionary::new();
    sig.set("Type", Object::Name(b"DocTimeStamp".to_vec()));
    sig.set("Filter", Object::Name(b"Adobe.PPKLite".to_vec()));
    sig.set("SubFilter", Object::Name(b"ETSI.RFC3161".to_vec()));
    update.put_raw(sig_id, signature_dict(&sig, 12 * 1024));
    add_field(
        &file,
        &mut update,
        &unused_field_name("KexinDocTimeStamp", &existing),
        sig_id,
        page_id,
        [0.0; 4],
        None,
        Dictionary::new(),
    )?;
    cover(pdf, None, update.appended_to(pdf), digest_algorithm)
}

/// Everything sealing does with a document before it is signed, with a
/// sample seal (the default image) at a fixed place: the document with
/// the prepared update appended, or the error a caller would get. For
/// tests and the `pdf_seal` fuzz target.
#[cfg(any(test, fuzzing))]
pub fn lay_out_sample_seal(pdf: &[u8], page: Option<u32>, certify: bool) -> Result<Vec<u8>, Error> {
    static IMAGE: std::sync::OnceLock<SealImage> = std::sync::OnceLock::new();
    let image = IMAGE.get_or_init(|| {
        let png = crate::image::default_seal_png().expect("the default image renders");
        SealImage::encode(&png).expect("the default image encodes")
    });
    let row = SealRow {
        name: "sample".into(),
        organization: "某某市市场监督管理局".into(),
        uscc: None,
        kind: "official".into(),
        image: Vec::new(),
        key_label: "sample".into(),
        certificate_serial: "0123456789abcdef".into(),
        status: "active".into(),
        created_at: 0,
    };
    let placement = Placement {
        page,
        x: 36.0,
        y: 36.0,
        size: 120.0,
    };
    let covered = lay_out_signature(
        pdf,
        None,
        &row,
        image,
        &placement,
        certify,
        Level::BB,
        DigestAlgorithm::Sha256,
    )?;
    Ok([pdf, &covered.tail].concat())
}

/// The number of signature fields `pdf` has, for the `pdf_seal` fuzz
/// target's check that a prepared update adds exactly one.
#[cfg(fuzzing)]
pub fn signature_fields_for_fuzzing(pdf: &[u8]) -> Result<usize, Error> {
    PdfFile::parse(pdf).map(|file| signature_fields(&file.doc).len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An update with the ByteRange placeholder and a two-byte Contents.
    fn tail() -> Vec<u8> {
        let mut tail = b"1 0 obj << ".to_vec();
        tail.extend_from_slice(BYTE_RANGE_PLACEHOLDER);
        tail.extend_from_slice(b"/Contents <0000> >> endobj\n%%EOF\n");
        tail
    }

    /// What the seal must sign: the hash of everything but Contents.
    fn digest_of(original: &[u8], algorithm: DigestAlgorithm) -> Vec<u8> {
        let covered = cover(original, None, tail(), algorithm).unwrap();
        let whole = [original, &covered.tail].concat();
        let (start, end) = (
            original.len() + covered.contents_start,
            original.len() + covered.contents_end,
        );
        assert_eq!(&whole[start..end], b"<0000>");
        let mut expected = algorithm.hasher();
        expected.update(&whole[..start]);
        expected.update(&whole[end..]);
        let expected = expected.finish();
        assert_eq!(covered.digest, expected);
        expected
    }

    fn received(chunks: &[&[u8]], algorithm: DigestAlgorithm) -> ReceivedDigest {
        let mut r = ReceivedDigest::new(algorithm);
        for c in chunks {
            r.update(c);
        }
        r
    }

    /// A document hashed as it arrived gives the digest of hashing it
    /// whole; one hashed with another digest, or over other bytes, is
    /// hashed again rather than trusted.
    #[test]
    fn a_received_digest_is_used_only_for_its_document_and_algorithm() {
        let original = b"%PDF-1.7\n... the document ...\n%%EOF\n";
        let (head, rest) = original.split_at(9);
        for algorithm in [DigestAlgorithm::Sha256, DigestAlgorithm::Sm3] {
            let expected = digest_of(original, algorithm);
            let hashed = cover(
                original,
                Some(received(&[head, rest], algorithm)),
                tail(),
                algorithm,
            );
            assert_eq!(hashed.unwrap().digest, expected);
        }
        let sm3 = digest_of(original, DigestAlgorithm::Sm3);
        let other_algorithm = received(&[original], DigestAlgorithm::Sha256);
        let covered = cover(
            original,
            Some(other_algorithm),
            tail(),
            DigestAlgorithm::Sm3,
        );
        assert_eq!(covered.unwrap().digest, sm3);
        let sha256 = digest_of(original, DigestAlgorithm::Sha256);
        let cut_short = received(&[head], DigestAlgorithm::Sha256);
        let covered = cover(original, Some(cut_short), tail(), DigestAlgorithm::Sha256);
        assert_eq!(covered.unwrap().digest, sha256);
    }

    /// The page and the catalog the seal changes are replaced under the
    /// generation the document gave them, so a reader finds the field.
    #[test]
    fn objects_of_a_later_generation_are_replaced_under_their_own() {
        for xref_stream in [false, true] {
            let original = crate::pdf::tests::document(
                &[
                    (1, 1, "<< /Type /Catalog /Pages 2 1 R >>"),
                    (2, 1, "<< /Type /Pages /Kids [3 1 R] /Count 1 >>"),
                    (
                        3,
                        1,
                        "<< /Type /Page /Parent 2 1 R /MediaBox [0 0 595 842] >>",
                    ),
                ],
                "/Size 4 /Root 1 1 R",
                xref_stream,
            );
            assert_eq!(PdfFile::parse(&original).unwrap().xref_stream, xref_stream);
            let sealed = lay_out_sample_seal(&original, None, false).unwrap();
            let file = PdfFile::parse(&sealed).unwrap();
            assert_eq!(
                signature_fields(&file.doc).len(),
                1,
                "xref stream: {xref_stream}"
            );
            let annots = file.dict((3, 1)).unwrap().get(b"Annots").unwrap();
            assert_eq!(file.resolve(annots).as_array().unwrap().len(), 1);
            // lopdf reads past a row whose generation is not its object's;
            // qpdf does not, and warns (exit status 3) that it rebuilt the
            // cross-reference table.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sealed.pdf");
            std::fs::write(&path, &sealed).unwrap();
            let check = std::process::Command::new("qpdf")
                .arg("--check")
                .arg(&path)
                .output()
                .expect("qpdf runs");
            assert!(
                check.status.success(),
                "xref stream: {xref_stream}: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }

    /// Signature fields are found below parents, with the type inherited
    /// and widgets not taken for fields; a new seal's name is one no
    /// signature field has, and a certification is refused after any.
    #[test]
    fn nested_signature_fields_count_and_keep_their_names() {
        let pdf = crate::pdf::tests::document(
            &[
                (
                    1,
                    0,
                    "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [4 0 R 6 0 R 8 0 R] >> >>",
                ),
                (2, 0, "<< /Type /Pages /Kids [3 0 R] /Count 1 >>"),
                (
                    3,
                    0,
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
                ),
                (4, 0, "<< /T (Signatures) /Kids [5 0 R] >>"),
                (5, 0, "<< /T (Sig1) /FT /Sig /Parent 4 0 R >>"),
                (6, 0, "<< /T (Approvals) /FT /Sig /Kids [7 0 R] >>"),
                (7, 0, "<< /T (A1) /Parent 6 0 R >>"),
                (8, 0, "<< /T (KexinSeal3) /FT /Sig /Kids [9 0 R] >>"),
                (9, 0, "<< /Type /Annot /Subtype /Widget /Parent 8 0 R >>"),
            ],
            "/Size 10 /Root 1 0 R",
            false,
        );
        let file = PdfFile::parse(&pdf).unwrap();
        let existing = signature_fields(&file.doc);
        let names: Vec<&str> = existing.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Signatures.Sig1", "Approvals.A1", "KexinSeal3"]);
        assert!(existing[2].dict.has(b"T"), "the field, not its widget");
        assert_eq!(unused_field_name("KexinSeal", &existing[2..]), "KexinSeal2");
        assert_eq!(unused_field_name("KexinSeal", &existing[1..]), "KexinSeal4");

        assert!(matches!(
            lay_out_sample_seal(&pdf, None, true),
            Err(Error::UnsupportedPdf(_))
        ));
        let sealed = lay_out_sample_seal(&pdf, None, false).unwrap();
        let sealed = PdfFile::parse(&sealed).unwrap();
        let names: Vec<String> = signature_fields(&sealed.doc)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names[3..], ["KexinSeal4"]);
    }
}
