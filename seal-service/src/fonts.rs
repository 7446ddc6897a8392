//! The fonts Kexin's PDFs write text in, neither embedded: Helvetica (one
//! of the standard 14) for ASCII, and for the rest STSong-Light with the
//! UniGB-UCS2-H encoding, a Chinese font every PDF viewer supplies itself
//! (Adobe-GB1; poppler through poppler-data and fontconfig), where an
//! embedded one would add megabytes to every document.

use lopdf::{Dictionary, Object, ObjectId, StringFormat};

use crate::pdf::real;

/// The `Font` resources that [`text`] refers to: `FL` (Helvetica) and `FC`
/// (STSong-Light), whose descriptor, from [`song_light_descriptor`], is the
/// indirect object `descriptor`.
pub fn resources(descriptor: ObjectId) -> Dictionary {
    let mut helvetica = Dictionary::new();
    helvetica.set("Type", name("Font"));
    helvetica.set("Subtype", name("Type1"));
    helvetica.set("BaseFont", name("Helvetica"));

    let mut system = Dictionary::new();
    system.set(
        "Registry",
        Object::String(b"Adobe".to_vec(), StringFormat::Literal),
    );
    system.set(
        "Ordering",
        Object::String(b"GB1".to_vec(), StringFormat::Literal),
    );
    system.set("Supplement", Object::Integer(2));
    let mut cid = Dictionary::new();
    cid.set("Type", name("Font"));
    cid.set("Subtype", name("CIDFontType0"));
    cid.set("BaseFont", name("STSong-Light"));
    cid.set("CIDSystemInfo", Object::Dictionary(system));
    cid.set("FontDescriptor", Object::Reference(descriptor));
    cid.set("DW", Object::Integer(1000));
    let mut song = Dictionary::new();
    song.set("Type", name("Font"));
    song.set("Subtype", name("Type0"));
    song.set("BaseFont", name("STSong-Light"));
    song.set("Encoding", name("UniGB-UCS2-H"));
    song.set(
        "DescendantFonts",
        Object::Array(vec![Object::Dictionary(cid)]),
    );

    let mut fonts = Dictionary::new();
    fonts.set("FL", Object::Dictionary(helvetica));
    fonts.set("FC", Object::Dictionary(song));
    fonts
}

/// STSong-Light's metrics, as Adobe publishes them for the font.
pub fn song_light_descriptor() -> Dictionary {
    let mut d = Dictionary::new();
    d.set("Type", name("FontDescriptor"));
    d.set("FontName", name("STSong-Light"));
    d.set("Flags", Object::Integer(6));
    d.set(
        "FontBBox",
        Object::Array(vec![(-25).into(), (-254).into(), 1000.into(), 880.into()]),
    );
    d.set("ItalicAngle", Object::Integer(0));
    d.set("Ascent", Object::Integer(880));
    d.set("Descent", Object::Integer(-120));
    d.set("CapHeight", Object::Integer(880));
    d.set("StemV", Object::Integer(93));
    d
}

/// Text operators, for inside `BT … ET`, that show `text` at `size` points:
/// a font and a `Tj` per run, ASCII in Helvetica and the rest in
/// STSong-Light. Control characters are left out.
pub fn text(text: &str, size: f64) -> String {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_control()).collect();
    let size = real(size);
    let mut operators = String::new();
    for run in chars.chunk_by(|a, b| a.is_ascii() == b.is_ascii()) {
        let (font, hex) = if run[0].is_ascii() {
            (
                "FL",
                run.iter()
                    .map(|&c| format!("{:02X}", u32::from(c)))
                    .collect(),
            )
        } else {
            ("FC", ucs2(run))
        };
        operators.push_str(&format!("/{font} {size} Tf <{hex}> Tj "));
    }
    operators
}

/// About how wide [`text`] sets `text`, in ems: Helvetica's average
/// advance is ~0.55 em, a Chinese character's 1 em.
pub fn width_in_ems(text: &str) -> f64 {
    text.chars()
        .filter(|c| !c.is_control())
        .map(|c| if c.is_ascii() { 0.6 } else { 1.0 })
        .sum()
}

/// UCS-2 big-endian hex, as UniGB-UCS2-H wants. UCS-2 has no surrogates:
/// a character beyond the BMP shows as 〓 (U+3013, the geta mark that
/// Chinese typesetting uses for a missing character).
fn ucs2(chars: &[char]) -> String {
    chars
        .iter()
        .map(|&c| u16::try_from(u32::from(c)).unwrap_or(0x3013))
        .map(|u| format!("{u:04X}"))
        .collect()
}

fn name(n: &str) -> Object {
    Object::Name(n.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_runs_are_set_in_helvetica_and_the_rest_in_song_light() {
        assert_eq!(
            text("XX市Data局\u{20000}\n", 7.0),
            "/FL 7 Tf <5858> Tj /FC 7 Tf <5E02> Tj /FL 7 Tf <44617461> Tj \
             /FC 7 Tf <5C403013> Tj "
        );
        assert_eq!(text("", 7.0), "");
    }

    #[test]
    fn widths_count_chinese_characters_as_one_em() {
        assert_eq!(width_in_ems("局局"), 2.0);
        assert!((width_in_ems("ab局") - 2.2).abs() < 1e-9);
    }
}
