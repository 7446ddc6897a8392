//! Just enough PDF for sealing: the document is read with lopdf (classic
//! and stream cross-references, object streams), and changes are written
//! as an incremental update appended after the original bytes, which stay
//! untouched so that earlier signatures remain valid.

use std::collections::BTreeMap;

use lopdf::xref::XrefEntry;
use lopdf::{Dictionary, Object, ObjectId, StringFormat};

use crate::Error;

/// A parsed PDF and what an incremental update must continue from.
pub struct PdfFile {
    pub doc: lopdf::Document,
    /// Offset of the last cross-reference section (the update's /Prev).
    pub startxref: usize,
    /// Whether that section is a cross-reference stream; the update then
    /// writes one too (mixing kinds confuses some readers).
    pub xref_stream: bool,
    /// The next free object number.
    pub size: u32,
}

impl PdfFile {
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        // lopdf keeps offsets in 32 bits, and so do the update's rows.
        if u32::try_from(bytes.len()).is_err() {
            return Err(Error::UnsupportedPdf(
                "the document is 4 GiB or larger, more than sealing can address".into(),
            ));
        }
        if !bytes.starts_with(b"%PDF-") {
            return Err(Error::UnsupportedPdf(
                "the file does not start with %PDF-".into(),
            ));
        }
        let startxref = last_startxref(bytes)
            .ok_or_else(|| Error::UnsupportedPdf("no startxref at the end of the file".into()))?;
        let doc = lopdf::Document::load_mem(bytes)
            .map_err(|e| Error::UnsupportedPdf(format!("unreadable: {e}")))?;
        if doc.is_encrypted() || doc.trailer.has(b"Encrypt") {
            return Err(Error::UnsupportedPdf(
                "the PDF is encrypted; decrypt it before sealing".into(),
            ));
        }
        let xref_stream = !bytes
            .get(startxref..)
            .map(|rest| rest.trim_ascii_start().starts_with(b"xref"))
            .unwrap_or(false);
        if let Some((number, generation)) = misplaced_object(&doc, bytes) {
            return Err(Error::UnsupportedPdf(format!(
                "the cross-reference table is damaged (object {number} {generation} is not where it says); \
                 repair the file, e.g. with qpdf, and seal the repaired file"
            )));
        }
        let size = next_object_number(&doc)?;
        doc.catalog()
            .map_err(|_| Error::UnsupportedPdf("the trailer has no document catalog".into()))?;
        Ok(Self {
            doc,
            startxref,
            xref_stream,
            size,
        })
    }

    pub fn root_id(&self) -> Result<ObjectId, Error> {
        self.doc
            .trailer
            .get(b"Root")
            .and_then(Object::as_reference)
            .map_err(|_| Error::UnsupportedPdf("the trailer's /Root is not a reference".into()))
    }

    pub fn dict(&self, id: ObjectId) -> Result<&Dictionary, Error> {
        self.doc
            .get_object(id)
            .and_then(Object::as_dict)
            .map_err(|_| {
                Error::UnsupportedPdf(format!("object {} {} is not a dictionary", id.0, id.1))
            })
    }

    /// Follows references.
    pub fn resolve<'b>(&'b self, object: &'b Object) -> &'b Object {
        self.doc
            .dereference(object)
            .map(|(_, o)| o)
            .unwrap_or(object)
    }

    /// Page `n` (1-based), the last page when `None`.
    pub fn page(&self, n: Option<u32>) -> Result<(u32, ObjectId), Error> {
        let pages = self.doc.get_pages();
        let count = pages.len() as u32;
        if count == 0 {
            return Err(Error::UnsupportedPdf("the document has no pages".into()));
        }
        let n = n.unwrap_or(count);
        pages.get(&n).map(|id| (n, *id)).ok_or_else(|| {
            Error::InvalidInput(format!("page {n} does not exist; the document has {count}"))
        })
    }
}

/// A signature field: a terminal field whose type, its own or inherited
/// from a parent, is /Sig.
pub struct SignatureField<'d> {
    /// The fully qualified name: the parents' names and its own, joined
    /// with dots.
    pub name: String,
    pub dict: &'d Dictionary,
}

/// The most fields a walk of the form visits: a bound for cyclic and
/// absurd field trees.
const MAX_FIELDS: usize = 10_000;

/// The document's signature fields, in the form's order. A field whose
/// kids carry names of their own is a parent, walked into; kids without a
/// name are its widgets, and the field is terminal.
pub fn signature_fields(doc: &lopdf::Document) -> Vec<SignatureField<'_>> {
    let resolve = |o| doc.dereference(o).map(|(_, o)| o).unwrap_or(o);
    let dict_of = |o| resolve(o).as_dict().ok();
    let Some(fields) = doc
        .catalog()
        .ok()
        .and_then(|c| c.get(b"AcroForm").ok())
        .and_then(dict_of)
        .and_then(|form| form.get(b"Fields").ok())
        .and_then(|f| resolve(f).as_array().ok())
    else {
        return Vec::new();
    };
    let mut stack: Vec<(&Object, String, bool)> = fields
        .iter()
        .rev()
        .map(|f| (f, String::new(), false))
        .collect();
    let mut found = Vec::new();
    let mut visited = 0;
    while let Some((field, parent, parent_is_signature)) = stack.pop() {
        visited += 1;
        if visited > MAX_FIELDS {
            break;
        }
        let Some(dict) = dict_of(field) else {
            continue;
        };
        let name = match dict.get(b"T").and_then(Object::as_str) {
            Ok(own) if parent.is_empty() => decode_text(own),
            Ok(own) => format!("{parent}.{}", decode_text(own)),
            Err(_) => parent,
        };
        let is_signature = dict
            .get(b"FT")
            .and_then(Object::as_name)
            .map_or(parent_is_signature, |t| t == b"Sig");
        let named_kids: Vec<&Object> = dict
            .get(b"Kids")
            .and_then(|k| resolve(k).as_array())
            .map(|kids| {
                kids.iter()
                    .filter(|k| dict_of(k).is_some_and(|d| d.has(b"T")))
                    .collect()
            })
            .unwrap_or_default();
        if named_kids.is_empty() {
            if is_signature {
                found.push(SignatureField { name, dict });
            }
        } else {
            stack.extend(
                named_kids
                    .into_iter()
                    .rev()
                    .map(|k| (k, name.clone(), is_signature)),
            );
        }
    }
    found
}

/// A PDF text string: UTF-16BE after its byte order mark, or else read
/// as UTF-8 (PDFDocEncoding agrees with it on ASCII).
pub fn decode_text(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0xfe, 0xff]) {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// The first cross-reference row that does not point at its own object.
/// lopdf files each object under the number written at its offset, not
/// the row's, so in a damaged table an object can take the place of
/// another (a stale catalog, say): an update built on that view would
/// drop what the document really holds, such as earlier signatures.
fn misplaced_object(doc: &lopdf::Document, bytes: &[u8]) -> Option<ObjectId> {
    doc.reference_table
        .entries
        .iter()
        .find_map(|(number, entry)| match *entry {
            XrefEntry::Normal { offset, generation } => {
                let at = bytes.get(offset as usize..).unwrap_or_default();
                (object_header(at) != Some((*number, generation))).then_some((*number, generation))
            }
            _ => None,
        })
}

/// The `N G obj` that opens an indirect object, after any white space.
fn object_header(at: &[u8]) -> Option<ObjectId> {
    fn integer<T: std::str::FromStr>(at: &[u8]) -> Option<(T, &[u8])> {
        let end = at
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(at.len());
        let value = std::str::from_utf8(&at[..end]).ok()?.parse().ok()?;
        Some((value, &at[end..]))
    }
    let (number, rest) = integer(at.trim_ascii_start())?;
    let (generation, rest) = integer(rest.trim_ascii_start())?;
    rest.trim_ascii_start()
        .starts_with(b"obj")
        .then_some((number, generation))
}

/// ISO 32000-1's largest object number (Annex C), which readers may hold
/// a document to.
const MAX_OBJECT_NUMBER: i64 = 8_388_607;

/// Object numbers kept free under that limit for what sealing adds: the
/// seal's update, validation data, a document time-stamp, later seals.
const ROOM_FOR_UPDATES: i64 = 1024;

/// The first object number an update may use: past every object the
/// document has, and past its trailer's /Size unless that is out of range
/// (a /Size is sometimes wrong; the objects are not).
fn next_object_number(doc: &lopdf::Document) -> Result<u32, Error> {
    let last_usable = MAX_OBJECT_NUMBER - ROOM_FOR_UPDATES;
    let trailer_size = doc
        .trailer
        .get(b"Size")
        .and_then(Object::as_i64)
        .ok()
        .filter(|size| (0..=last_usable).contains(size))
        .unwrap_or(0);
    let next = (i64::from(doc.max_id) + 1).max(trailer_size);
    if next > last_usable {
        return Err(Error::UnsupportedPdf(format!(
            "the document numbers its objects up to {}, too close to PDF's limit of {MAX_OBJECT_NUMBER}",
            doc.max_id
        )));
    }
    Ok(next as u32)
}

fn last_startxref(bytes: &[u8]) -> Option<usize> {
    let tail_from = bytes.len().saturating_sub(2048);
    let tail = &bytes[tail_from..];
    let at = tail.windows(9).rposition(|w| w == b"startxref")?;
    let rest = &tail[at + 9..];
    let digits: Vec<u8> = rest
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// New and replaced objects, serialized, waiting to be appended.
pub struct IncrementalUpdate {
    prev: usize,
    xref_stream: bool,
    next: u32,
    trailer: Dictionary,
    /// Serialized objects by number, with their generation: a replaced
    /// object keeps its own, which its cross-reference row must repeat.
    objects: BTreeMap<u32, (u16, Vec<u8>)>,
}

impl IncrementalUpdate {
    pub fn new(file: &PdfFile) -> Self {
        let mut trailer = Dictionary::new();
        for key in [&b"Root"[..], b"Info", b"ID"] {
            if let Ok(v) = file.doc.trailer.get(key) {
                trailer.set(key.to_vec(), v.clone());
            }
        }
        Self {
            prev: file.startxref,
            xref_stream: file.xref_stream,
            next: file.size,
            trailer,
            objects: BTreeMap::new(),
        }
    }

    pub fn allocate(&mut self) -> ObjectId {
        let id = (self.next, 0);
        self.next += 1;
        id
    }

    /// Writes object `id`: a new one from `allocate`, or a replacement
    /// that keeps the generation the document gave it.
    pub fn put(&mut self, id: ObjectId, object: &Object) {
        let mut body = Vec::new();
        write_object(object, &mut body);
        self.put_raw(id, body);
    }

    /// A stream object with `dict` (its /Length is set here) and `data`.
    pub fn put_stream(&mut self, id: ObjectId, mut dict: Dictionary, data: &[u8]) {
        dict.set("Length", Object::Integer(data.len() as i64));
        let mut body = Vec::new();
        write_object(&Object::Dictionary(dict), &mut body);
        body.extend_from_slice(b"\nstream\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\nendstream");
        self.put_raw(id, body);
    }

    pub fn put_raw(&mut self, id: ObjectId, body: Vec<u8>) {
        let mut framed = format!("{} {} obj\n", id.0, id.1).into_bytes();
        framed.extend_from_slice(&body);
        framed.extend_from_slice(b"\nendobj\n");
        self.objects.insert(id.0, (id.1, framed));
    }

    /// The bytes to append to `original`: the original itself is never
    /// copied (a large PDF is sent back as it came, followed by these).
    pub fn appended_to(self, original: &[u8]) -> Vec<u8> {
        let base = original.len();
        let mut out = Vec::with_capacity(64 * 1024);
        if !original.ends_with(b"\n") {
            out.push(b'\n');
        }
        let mut offsets = BTreeMap::new();
        for (num, (generation, body)) in &self.objects {
            offsets.insert(*num, (base + out.len(), *generation));
            out.extend_from_slice(body);
        }
        let mut trailer = self.trailer;
        trailer.set("Prev", Object::Integer(self.prev as i64));
        if self.xref_stream {
            let xref_id = self.next;
            offsets.insert(xref_id, (base + out.len(), 0));
            let size = xref_id + 1;
            let (index, rows) = xref_rows(&offsets, 4);
            trailer.set("Type", Object::Name(b"XRef".to_vec()));
            trailer.set("Size", Object::Integer(size as i64));
            trailer.set("W", Object::Array(vec![1.into(), 4.into(), 2.into()]));
            trailer.set(
                "Index",
                Object::Array(index.into_iter().map(Object::Integer).collect()),
            );
            trailer.set("Length", Object::Integer(rows.len() as i64));
            let start = base + out.len();
            out.extend_from_slice(format!("{xref_id} 0 obj\n").as_bytes());
            write_object(&Object::Dictionary(trailer), &mut out);
            out.extend_from_slice(b"\nstream\n");
            out.extend_from_slice(&rows);
            out.extend_from_slice(b"\nendstream\nendobj\n");
            out.extend_from_slice(format!("startxref\n{start}\n%%EOF\n").as_bytes());
        } else {
            let start = base + out.len();
            out.extend_from_slice(b"xref\n");
            for (first, run) in runs(&offsets) {
                out.extend_from_slice(format!("{first} {}\n", run.len()).as_bytes());
                for (offset, generation) in run {
                    out.extend_from_slice(format!("{offset:010} {generation:05} n\r\n").as_bytes());
                }
            }
            trailer.set("Size", Object::Integer(self.next as i64));
            out.extend_from_slice(b"trailer\n");
            write_object(&Object::Dictionary(trailer), &mut out);
            out.extend_from_slice(format!("\nstartxref\n{start}\n%%EOF\n").as_bytes());
        }
        out
    }
}

/// Consecutive object numbers grouped, for the xref subsections: each
/// object's offset and generation.
fn runs(offsets: &BTreeMap<u32, (usize, u16)>) -> Vec<(u32, Vec<(usize, u16)>)> {
    let mut out: Vec<(u32, Vec<(usize, u16)>)> = Vec::new();
    for (num, offset) in offsets {
        match out.last_mut() {
            Some((first, run)) if *first + run.len() as u32 == *num => run.push(*offset),
            _ => out.push((*num, vec![*offset])),
        }
    }
    out
}

/// /Index pairs and binary rows (type 1, 4-byte offset, 2-byte generation).
fn xref_rows(offsets: &BTreeMap<u32, (usize, u16)>, offset_width: usize) -> (Vec<i64>, Vec<u8>) {
    let mut index = Vec::new();
    let mut rows = Vec::new();
    for (first, run) in runs(offsets) {
        index.push(first as i64);
        index.push(run.len() as i64);
        for (offset, generation) in run {
            rows.push(1);
            rows.extend_from_slice(&(offset as u64).to_be_bytes()[8 - offset_width..]);
            rows.extend_from_slice(&generation.to_be_bytes());
        }
    }
    (index, rows)
}

/// Serializes a (non-stream) object in PDF syntax.
pub fn write_object(object: &Object, out: &mut Vec<u8>) {
    match object {
        Object::Null => out.extend_from_slice(b"null"),
        Object::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Object::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Object::Real(r) => out.extend_from_slice(real(*r as f64).as_bytes()),
        Object::Name(n) => write_name(n, out),
        Object::String(s, StringFormat::Hexadecimal) => {
            out.push(b'<');
            out.extend_from_slice(hex::encode(s).as_bytes());
            out.push(b'>');
        }
        Object::String(s, StringFormat::Literal) => {
            out.push(b'(');
            for b in s {
                match b {
                    b'(' | b')' | b'\\' => {
                        out.push(b'\\');
                        out.push(*b);
                    }
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    _ => out.push(*b),
                }
            }
            out.push(b')');
        }
        Object::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_object(item, out);
            }
            out.push(b']');
        }
        Object::Dictionary(d) => write_dict(d, out),
        Object::Stream(s) => {
            // Existing streams are never rewritten; new ones go through
            // IncrementalUpdate::put_stream. Written whole for completeness.
            write_dict(&s.dict, out);
            out.extend_from_slice(b"\nstream\n");
            out.extend_from_slice(&s.content);
            out.extend_from_slice(b"\nendstream");
        }
        Object::Reference((n, g)) => out.extend_from_slice(format!("{n} {g} R").as_bytes()),
    }
}

fn write_dict(d: &Dictionary, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<<");
    for (k, v) in d.iter() {
        write_name(k, out);
        out.push(b' ');
        write_object(v, out);
    }
    out.extend_from_slice(b">>");
}

fn write_name(n: &[u8], out: &mut Vec<u8>) {
    out.push(b'/');
    for b in n {
        if b.is_ascii_graphic() && !b"()<>[]{}/%#".contains(b) {
            out.push(*b);
        } else {
            out.extend_from_slice(format!("#{b:02X}").as_bytes());
        }
    }
}

/// A real number without exponent, as PDF wants.
pub fn real(r: f64) -> String {
    let s = format!("{r:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" || s == "-0" {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// A PDF text string: ASCII as is, anything else as UTF-16BE with a BOM.
pub fn text_string(s: &str) -> Object {
    if s.is_ascii() {
        Object::String(s.as_bytes().to_vec(), StringFormat::Literal)
    } else {
        let mut bytes = vec![0xfe, 0xff];
        for unit in s.encode_utf16() {
            bytes.extend_from_slice(&unit.to_be_bytes());
        }
        Object::String(bytes, StringFormat::Hexadecimal)
    }
}

/// D:YYYYMMDDHHmmSSZ
pub fn pdf_date(unix: u64) -> String {
    let days = unix / 86400;
    let secs = unix % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "D:{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Documents from this size on are parsed and hashed off the executor.
/// Below it the work takes a few milliseconds at most, less than handing
/// the worker's other tasks to another thread costs: sealing 1 MB
/// documents one after another that way was ~10% slower.
const OFF_THE_EXECUTOR_FROM: usize = 4 << 20;

/// Runs CPU-heavy work on a document of `size` bytes (parsing, hashing:
/// ~0.2 s at 50 MB on a slow machine) so that it does not hold up the
/// other tasks of the worker thread, sign-ins and API calls among them: on
/// a multi-threaded runtime they move to another thread meanwhile. Small
/// documents, and work on a current-thread runtime or none, run in place.
pub(crate) fn off_the_executor<T>(size: usize, work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi_thread =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if multi_thread && size >= OFF_THE_EXECUTOR_FROM {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A document of `objects` (number, generation, body), with a
    /// cross-reference table or stream and `trailer` in its trailer.
    pub(crate) fn document(
        objects: &[(u32, u16, &str)],
        trailer: &str,
        xref_stream: bool,
    ) -> Vec<u8> {
        let mut pdf = b"%PDF-1.7\n".to_vec();
        let mut rows = Vec::new();
        for (number, generation, body) in objects {
            rows.push((*number, *generation, pdf.len()));
            pdf.extend_from_slice(
                format!("{number} {generation} obj\n{body}\nendobj\n").as_bytes(),
            );
        }
        let start = pdf.len();
        if xref_stream {
            let number = objects.iter().map(|o| o.0).max().unwrap_or(0) + 1;
            rows.push((number, 0, start));
            let mut data = Vec::new();
            let mut index = String::new();
            for (number, generation, offset) in &rows {
                index.push_str(&format!("{number} 1 "));
                data.push(1);
                data.extend_from_slice(&(*offset as u32).to_be_bytes());
                data.extend_from_slice(&generation.to_be_bytes());
            }
            pdf.extend_from_slice(
                format!(
                    "{number} 0 obj\n<< /Type /XRef {trailer} /W [1 4 2] /Index [{index}] /Length {} >>\nstream\n",
                    data.len()
                )
                .as_bytes(),
            );
            pdf.extend_from_slice(&data);
            pdf.extend_from_slice(b"\nendstream\nendobj\n");
        } else {
            pdf.extend_from_slice(b"xref\n");
            for (number, generation, offset) in &rows {
                pdf.extend_from_slice(
                    format!("{number} 1\n{offset:010} {generation:05} n\r\n").as_bytes(),
                );
            }
            pdf.extend_from_slice(format!("trailer\n<< {trailer} >>\n").as_bytes());
        }
        pdf.extend_from_slice(format!("startxref\n{start}\n%%EOF\n").as_bytes());
        pdf
    }

    /// An update's objects are numbered past the document's and its
    /// trailer's /Size, an absurd /Size is ignored, and a document that
    /// leaves no room under PDF's object number limit is refused.
    #[test]
    fn updates_number_their_objects_within_the_limit() {
        let objects = |last: u32| {
            document(
                &[
                    (1, 0, "<< /Type /Catalog /Pages 2 0 R >>"),
                    (2, 0, "<< /Type /Pages /Kids [] /Count 0 >>"),
                    (last, 0, "null"),
                ],
                "/Size 40 /Root 1 0 R",
                false,
            )
        };
        assert_eq!(PdfFile::parse(&objects(7)).unwrap().size, 40);
        assert_eq!(PdfFile::parse(&objects(70)).unwrap().size, 71);
        let absurd = document(
            &[
                (1, 0, "<< /Type /Catalog /Pages 2 0 R >>"),
                (2, 0, "<< /Type /Pages /Kids [] /Count 0 >>"),
            ],
            "/Size 100000000 /Root 1 0 R",
            false,
        );
        assert_eq!(PdfFile::parse(&absurd).unwrap().size, 3);
        match PdfFile::parse(&objects(8_388_000)) {
            Err(Error::UnsupportedPdf(message)) => assert!(message.contains("limit"), "{message}"),
            other => panic!("{:?}", other.map(|f| f.size)),
        }
        // lopdf itself refuses the last number there is.
        assert!(matches!(
            PdfFile::parse(&objects(u32::MAX)),
            Err(Error::UnsupportedPdf(_))
        ));
    }

    /// A table whose row sends a reader to another object than the one it
    /// names is refused, rather than sealed on a wrong view of the file.
    #[test]
    fn a_damaged_cross_reference_table_is_refused() {
        let good = document(
            &[
                (1, 0, "<< /Type /Catalog /Pages 2 0 R >>"),
                (2, 0, "<< /Type /Pages /Kids [3 0 R] /Count 1 >>"),
                (3, 0, "<< /Type /Page /Parent 2 0 R >>"),
            ],
            "/Size 4 /Root 1 0 R",
            false,
        );
        assert!(PdfFile::parse(&good).is_ok());
        // Object 3's row, pointed at object 1 (just after the header).
        let row = memchr::memmem::find(&good, b"3 1\n").unwrap() + 4;
        let mut damaged = good.clone();
        damaged[row..row + 10].copy_from_slice(b"0000000009");
        match PdfFile::parse(&damaged) {
            Err(Error::UnsupportedPdf(message)) => {
                assert!(message.contains("object 3 0"), "{message}")
            }
            other => panic!("{:?}", other.map(|f| f.size)),
        }
    }

    /// A document past 32-bit offsets is refused before it is read.
    #[test]
    fn documents_of_4_gib_are_refused() {
        // Zeroed pages are mapped lazily: this does not use 4 GiB of memory.
        let mut huge = vec![0u8; 1 << 32];
        huge[..9].copy_from_slice(b"%PDF-1.7\n");
        match PdfFile::parse(&huge) {
            Err(Error::UnsupportedPdf(message)) => assert!(message.contains("4 GiB"), "{message}"),
            other => panic!("{:?}", other.map(|f| f.size)),
        }
    }

    #[test]
    fn dates_and_numbers() {
        assert_eq!(pdf_date(0), "D:19700101000000Z");
        assert_eq!(pdf_date(1_795_478_400), "D:20261124000000Z");
        assert_eq!(real(12.5), "12.5");
        assert_eq!(real(3.0), "3");
        assert_eq!(real(-0.00001), "0");
    }

    #[test]
    fn names_are_escaped() {
        let mut out = Vec::new();
        write_name(b"A B#", &mut out);
        assert_eq!(out, b"/A#20B#23");
    }
}
