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
        let (font, hex) = encoded(run);
        operators.push_str(&format!("/{font} {size} Tf <{hex}> Tj "));
    }
    operators
}

/// The font resource and the hex string that show `run`, whose characters
/// are all ASCII (Helvetica, one byte each) or none (STSong-Light, UCS-2).
fn encoded(run: &[char]) -> (&'static str, String) {
    if run.first().is_some_and(char::is_ascii) {
        let hex = run
            .iter()
            .map(|&c| format!("{:02X}", u32::from(c)))
            .collect();
        ("FL", hex)
    } else {
        ("FC", ucs2(run))
    }
}

/// Text operators, for outside `BT … ET`, that set `text` around the top
/// of a circle centred at (`cx`, `cy`), as a paper seal's name runs inside
/// its ring: each character upright towards the rim, the whole centred on
/// the top, spanning up to 240° (a short name spaced out to 50° a
/// character, up to 220°), within the band between radii `inner` and
/// `outer`, and as large as that band and the text's length allow.
pub fn around_top(text: &str, cx: f64, cy: f64, inner: f64, outer: f64) -> String {
    const DEGREE: f64 = std::f64::consts::PI / 180.0;
    const MAX_SPAN: f64 = 240.0 * DEGREE;
    // A glyph rises ~0.88 em above its baseline and sinks ~0.12 below it;
    // a little air on both sides.
    const ASCENT: f64 = 0.88;
    const GAP: f64 = 1.05;
    let chars: Vec<char> = text.chars().filter(|c| !c.is_control()).collect();
    let ems = width_in_ems(text);
    if chars.is_empty() || ems <= 0.0 || outer <= inner {
        return String::new();
    }
    let band = outer - inner;
    // Glyphs hang from just inside `outer`; their middle is 0.4 em above
    // the baseline, and the arc there must hold them all within MAX_SPAN:
    // ems·size·GAP ≤ MAX_SPAN·(top − (ASCENT − 0.4)·size).
    let top = outer - band * 0.05;
    let size = (band * 0.8).min(MAX_SPAN * top / (ems * GAP + (ASCENT - 0.4) * MAX_SPAN));
    let baseline = top - ASCENT * size;
    let radius = baseline + 0.4 * size;
    let natural = ems * size * GAP / radius;
    let span = natural.max((chars.len() as f64 * 50.0 * DEGREE).min(220.0 * DEGREE));
    let extra = (span - natural) / chars.len() as f64;
    let mut angle = std::f64::consts::FRAC_PI_2 + span / 2.0;
    let mut out = String::from("BT ");
    for c in chars {
        let width = size * advance(c);
        let step = width * GAP / radius + extra;
        let at = angle - step / 2.0;
        angle -= step;
        // The glyph's x axis runs clockwise along the tangent, its y axis
        // outward; its origin is half its width before the point on the arc.
        let (sin, cos) = at.sin_cos();
        let (x, y) = (
            cx + baseline * cos - width / 2.0 * sin,
            cy + baseline * sin + width / 2.0 * cos,
        );
        let (font, hex) = encoded(&[c]);
        out.push_str(&format!(
            "/{font} {} Tf {} {} {} {} {} {} Tm <{hex}> Tj ",
            real(size),
            real(sin),
            real(-cos),
            real(cos),
            real(sin),
            real(x),
            real(y)
        ));
    }
    out.push_str("ET\n");
    out
}

/// How wide [`text`] sets `text`, in ems.
pub fn width_in_ems(text: &str) -> f64 {
    text.chars().map(advance).sum()
}

/// A character's advance in ems: Helvetica's for ASCII, 1 for the rest
/// (STSong-Light's Chinese characters are square), 0 for controls.
fn advance(c: char) -> f64 {
    match u8::try_from(c) {
        Ok(b @ 0x20..=0x7e) => f64::from(HELVETICA_WIDTHS[usize::from(b - 0x20)]) / 1000.0,
        _ if c.is_control() => 0.0,
        _ => 1.0,
    }
}

/// Helvetica's advance widths (its AFM, in 1/1000 em) for ' ' to '~', in
/// the standard encoding a Type 1 font without /Encoding has.
#[rustfmt::skip]
const HELVETICA_WIDTHS: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 222, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    222, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

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
    fn widths_are_helveticas_for_ascii_and_one_em_for_chinese() {
        assert_eq!(width_in_ems("局局\n"), 2.0);
        assert!((width_in_ems("Wi局") - (0.944 + 0.222 + 1.0)).abs() < 1e-9);
    }

    /// (a, b, c, d, e, f) of each glyph's text matrix.
    fn matrices(operators: &str) -> Vec<[f64; 6]> {
        operators
            .split(" Tm")
            .filter_map(|part| {
                let numbers: Vec<f64> = part
                    .split_whitespace()
                    .rev()
                    .take(6)
                    .map(|n| n.parse().ok())
                    .collect::<Option<_>>()?;
                let mut m = [0.0; 6];
                for (i, n) in numbers.into_iter().rev().enumerate() {
                    m[i] = n;
                }
                Some(m)
            })
            .collect()
    }

    #[test]
    fn names_run_upright_around_the_top_symmetrically() {
        let operators = around_top("某某市数据局", 0.0, 0.0, 30.0, 60.0);
        let glyphs = matrices(&operators);
        assert_eq!(glyphs.len(), 6, "{operators}");
        // Each glyph's centre on its baseline, which is one circle.
        let centres: Vec<(f64, f64)> = glyphs
            .iter()
            .map(|&[a, b, c, d, e, f]| {
                assert!((a - d).abs() < 1e-3 && (b + c).abs() < 1e-3, "a rotation");
                assert!((a * a + b * b - 1.0).abs() < 1e-3, "not scaled");
                let half = operators.split(" Tf").next().unwrap();
                let size: f64 = half.rsplit(' ').next().unwrap().parse().unwrap();
                (e + a * size / 2.0, f + b * size / 2.0)
            })
            .collect();
        let radius = (centres[0].0.powi(2) + centres[0].1.powi(2)).sqrt();
        for (i, &(x, y)) in centres.iter().enumerate() {
            assert!(((x * x + y * y).sqrt() - radius).abs() < 1e-2);
            let (mx, my) = centres[5 - i];
            assert!((x + mx).abs() < 1e-2 && (y - my).abs() < 1e-2, "mirrored");
        }
        // Left to right over the top, the first glyph on the left.
        assert!(centres[0].0 < 0.0 && centres[5].0 > 0.0);
        // At most 240°: nothing lower than 30° under the horizontal.
        assert!(centres.iter().all(|&(_, y)| y > -radius / 2.0 - 1e-2));
        assert!(radius > 30.0 && radius < 60.0);
        assert_eq!(around_top("", 0.0, 0.0, 30.0, 60.0), "");
    }

    #[test]
    fn a_long_name_shrinks_to_stay_within_240_degrees() {
        let name = "某".repeat(200);
        let glyphs = matrices(&around_top(&name, 0.0, 0.0, 30.0, 60.0));
        assert_eq!(glyphs.len(), 200);
        // The first glyph's x axis points along the tangent at its angle θ:
        // (sin θ, −cos θ); θ ≤ 90° + 120°.
        let [a, b, ..] = glyphs[0];
        let first = a.atan2(-b).to_degrees().rem_euclid(360.0);
        assert!(first <= 210.5 && first > 200.0, "{first}");
    }
}
