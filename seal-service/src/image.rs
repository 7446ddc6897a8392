//! Seal images: an operator's PNG (checked, size-limited) or Kexin's
//! default, a round red seal with a five-pointed star, rendered here.

use crate::Error;

pub const MAX_IMAGE_BYTES: usize = 1024 * 1024;

/// Checks that `bytes` is a PNG Kexin can decode, and returns its size.
pub fn check_png(bytes: &[u8]) -> Result<(u32, u32), Error> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(Error::InvalidInput(format!(
            "the seal image is larger than {MAX_IMAGE_BYTES} bytes"
        )));
    }
    let decoded = decode(bytes)?;
    Ok((decoded.width, decoded.height))
}

/// A decoded image: 8-bit RGB and, if the PNG had transparency, alpha.
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    pub alpha: Option<Vec<u8>>,
}

pub fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::InvalidInput(format!("not a usable PNG: {e}"));
    let mut decoder = png::Decoder::new(bytes);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w == 0 || h == 0 || w > 4096 || h > 4096 {
        return Err(Error::InvalidInput(
            "a seal image is 1 to 4096 pixels wide and high".into(),
        ));
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
    let data = &buf[..frame.buffer_size()];
    let pixels = (w * h) as usize;
    let (rgb, alpha) = match frame.color_type {
        png::ColorType::Rgb => (data.to_vec(), None),
        png::ColorType::Rgba => {
            let mut rgb = Vec::with_capacity(pixels * 3);
            let mut alpha = Vec::with_capacity(pixels);
            for px in data.chunks_exact(4) {
                rgb.extend_from_slice(&px[..3]);
                alpha.push(px[3]);
            }
            (rgb, Some(alpha))
        }
        png::ColorType::Grayscale => (data.iter().flat_map(|g| [*g, *g, *g]).collect(), None),
        png::ColorType::GrayscaleAlpha => {
            let mut rgb = Vec::with_capacity(pixels * 3);
            let mut alpha = Vec::with_capacity(pixels);
            for px in data.chunks_exact(2) {
                rgb.extend_from_slice(&[px[0], px[0], px[0]]);
                alpha.push(px[1]);
            }
            (rgb, Some(alpha))
        }
        png::ColorType::Indexed => return Err(bad(&"indexed colour after expansion")),
    };
    Ok(Decoded {
        width: w,
        height: h,
        rgb,
        alpha,
    })
}

/// The inner edge of the default seal's ring, as a fraction of its width.
pub const DEFAULT_RING_INNER: f64 = 0.43;
/// The tips of the default seal's star, as a fraction of its width. Between
/// them and the ring a visible seal sets the organization's name, around
/// the top as on a paper seal.
pub const DEFAULT_STAR_OUTER: f64 = 0.2;

/// Whether `png` is Kexin's default seal image.
pub fn is_default_seal(png: &[u8]) -> bool {
    static DEFAULT: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| default_seal_png().ok()).as_deref() == Some(png)
}

/// The default seal: a red ring and a five-pointed star on transparency,
/// 256 × 256, anti-aliased by 4 × 4 supersampling.
pub fn default_seal_png() -> Result<Vec<u8>, Error> {
    const N: u32 = 256;
    const RED: [u8; 3] = [0xd4, 0x1f, 0x1f];
    let c = N as f64 / 2.0;
    let star: Vec<(f64, f64)> = (0..10)
        .map(|i| {
            // A regular star: the inner vertices at 0.382 of the tips' radius.
            let r = DEFAULT_STAR_OUTER * if i % 2 == 0 { 1.0 } else { 0.382 } * N as f64;
            let a = std::f64::consts::PI * (i as f64 / 5.0) - std::f64::consts::FRAC_PI_2;
            (c + r * a.cos(), c + r * a.sin())
        })
        .collect();
    let inside_star = |x: f64, y: f64| {
        let mut inside = false;
        let mut j = star.len() - 1;
        for i in 0..star.len() {
            let (xi, yi) = star[i];
            let (xj, yj) = star[j];
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    };
    let mut rgba = Vec::with_capacity((N * N * 4) as usize);
    for py in 0..N {
        for px in 0..N {
            let mut covered = 0;
            for sy in 0..4 {
                for sx in 0..4 {
                    let (x, y) = (
                        px as f64 + (sx as f64 + 0.5) / 4.0,
                        py as f64 + (sy as f64 + 0.5) / 4.0,
                    );
                    let d = ((x - c).powi(2) + (y - c).powi(2)).sqrt();
                    let ring = d <= 0.48 * N as f64 && d >= DEFAULT_RING_INNER * N as f64;
                    if ring || inside_star(x, y) {
                        covered += 1;
                    }
                }
            }
            rgba.extend_from_slice(&RED);
            rgba.push((covered * 255 / 16) as u8);
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, N, N);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| Error::Encoding(e.to_string()))?;
        writer
            .write_image_data(&rgba)
            .map_err(|e| Error::Encoding(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_seal_is_a_png_with_a_transparent_corner_and_a_red_centre() {
        let png = default_seal_png().unwrap();
        let d = decode(&png).unwrap();
        assert_eq!((d.width, d.height), (256, 256));
        let alpha = d.alpha.unwrap();
        assert_eq!(alpha[0], 0);
        let centre = (128 * 256 + 128) as usize;
        assert_eq!(alpha[centre], 255);
        assert_eq!(&d.rgb[centre * 3..centre * 3 + 3], &[0xd4, 0x1f, 0x1f]);
    }
}
