//! Images as the CBIR agents read them: PNG (any colour type and depth) or
//! binary PPM (`P6`, 8 bits), decoded to 8-bit RGB.

use std::io::Cursor;

/// The largest image accepted, in pixels: 4 megapixels (12 MiB of RGB).
pub const MAX_PIXELS: u64 = 4 << 20;

/// An image as 8-bit RGB, row by row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

impl Rgb {
    /// The pixel at `(x, y)`.
    pub fn at(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// Why bytes are not an image the agents read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// Neither a PNG nor a binary PPM.
    #[error("not an image: expected PNG or binary PPM (P6)")]
    Format,
    /// The header or the data is broken.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// Empty, or larger than [`MAX_PIXELS`].
    #[error("image of {width}x{height} pixels: must be 1 to {MAX_PIXELS} pixels")]
    Size {
        /// Its width.
        width: u64,
        /// Its height.
        height: u64,
    },
}

fn check_size(width: u64, height: u64) -> Result<(), ImageError> {
    if width == 0 || height == 0 || width.saturating_mul(height) > MAX_PIXELS {
        return Err(ImageError::Size { width, height });
    }
    Ok(())
}

/// Decodes a PNG or a binary PPM.
pub fn decode(bytes: &[u8]) -> Result<Rgb, ImageError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes)
    } else if bytes.starts_with(b"P6") {
        decode_ppm(bytes)
    } else {
        Err(ImageError::Format)
    }
}

fn decode_png(bytes: &[u8]) -> Result<Rgb, ImageError> {
    let corrupt = |e: png::DecodingError| ImageError::Corrupt(e.to_string());
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    // The header is read before any pixel, so the size is checked before
    // the frame buffer is allocated.
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (width, height) = {
        let info = reader.info();
        (info.width, info.height)
    };
    check_size(width.into(), height.into())?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| ImageError::Corrupt("frame too large".to_owned()))?;
    let mut buffer = vec![0; size];
    let frame = reader.next_frame(&mut buffer).map_err(corrupt)?;
    buffer.truncate(frame.buffer_size());
    let pixels: Vec<u8> = match frame.color_type {
        png::ColorType::Rgb => buffer,
        png::ColorType::Rgba => buffer
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => buffer.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buffer
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        png::ColorType::Indexed => {
            return Err(ImageError::Corrupt("palette left unexpanded".to_owned()));
        }
    };
    if pixels.len() != width as usize * height as usize * 3 {
        return Err(ImageError::Corrupt("short frame".to_owned()));
    }
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

/// `P6 WIDTH HEIGHT 255` with whitespace and `#` comments between the
/// fields, one whitespace byte, then the pixels.
fn decode_ppm(bytes: &[u8]) -> Result<Rgb, ImageError> {
    let mut at = 2;
    let mut field = || -> Result<u64, ImageError> {
        loop {
            match bytes.get(at) {
                Some(b'#') => {
                    while bytes.get(at).is_some_and(|&b| b != b'\n') {
                        at += 1;
                    }
                }
                Some(b) if b.is_ascii_whitespace() => at += 1,
                Some(b) if b.is_ascii_digit() => break,
                _ => return Err(ImageError::Corrupt("bad PPM header".to_owned())),
            }
        }
        let start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) && at - start < 10 {
            at += 1;
        }
        std::str::from_utf8(&bytes[start..at])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ImageError::Corrupt("bad PPM header".to_owned()))
    };
    let width = field()?;
    let height = field()?;
    let maxval = field()?;
    if maxval != 255 {
        return Err(ImageError::Corrupt(format!(
            "PPM with maxval {maxval}: only 255 is read"
        )));
    }
    check_size(width, height)?;
    if !bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        return Err(ImageError::Corrupt("bad PPM header".to_owned()));
    }
    let data = &bytes[at + 1..];
    let need = (width * height * 3) as usize;
    if data.len() < need {
        return Err(ImageError::Corrupt(format!(
            "PPM data of {} bytes, {need} expected",
            data.len()
        )));
    }
    Ok(Rgb {
        width: width as u32,
        height: height as u32,
        pixels: data[..need].to_vec(),
    })
}

/// The image as a PNG (8-bit RGB).
pub fn encode_png(image: &Rgb) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Writing into a Vec fails only on a size mismatch, which `Rgb` rules
    // out by construction in this crate.
    let mut writer = encoder
        .write_header()
        .expect("a PNG header of a valid size writes into memory");
    writer
        .write_image_data(&image.pixels)
        .expect("pixels of the declared size write into memory");
    drop(writer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rgb {
        Rgb {
            width: 3,
            height: 2,
            pixels: (0..18).map(|i| (i * 13) as u8).collect(),
        }
    }

    #[test]
    fn png_round_trips() {
        let image = sample();
        assert_eq!(decode(&encode_png(&image)).unwrap(), image);
    }

    #[test]
    fn ppm_with_comments_decodes() {
        let image = sample();
        let mut bytes = b"P6\n# a comment\n3 2\n255\n".to_vec();
        bytes.extend_from_slice(&image.pixels);
        assert_eq!(decode(&bytes).unwrap(), image);
    }

    #[test]
    fn garbage_and_oversize_are_refused() {
        assert_eq!(decode(b"GIF89a"), Err(ImageError::Format));
        assert!(matches!(
            decode(b"P6 100000 100000 255\n"),
            Err(ImageError::Size { .. })
        ));
        assert!(matches!(
            decode(b"P6 2 2 255\nabc"),
            Err(ImageError::Corrupt(_))
        ));
        let png = encode_png(&sample());
        assert!(matches!(
            decode(&png[..png.len() / 2]),
            Err(ImageError::Corrupt(_))
        ));
    }
}
