//! What an image is reduced to for retrieval: a colour histogram and a
//! difference hash (dHash) of its luminance.

use serde::{Deserialize, Serialize};

use crate::image::Rgb;

/// Levels per channel of the colour histogram.
pub const LEVELS: usize = 4;
/// Bins of the colour histogram: [`LEVELS`]³.
pub const BINS: usize = LEVELS * LEVELS * LEVELS;

/// An image's descriptor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The image's width in pixels.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// The share of pixels in each RGB bin ([`BINS`] values summing to 1).
    pub histogram: Vec<f32>,
    /// 64-bit difference hash of the luminance, as 16 hex digits (a JSON
    /// number would lose bits).
    #[serde(with = "hex64")]
    pub dhash: u64,
}

/// Why a descriptor from outside is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad descriptor: {0}")]
pub struct BadDescriptor(pub String);

impl Descriptor {
    /// Checks a descriptor that came from outside: the right number of
    /// bins, each finite and in `[0, 1]`.
    pub fn check(&self) -> Result<(), BadDescriptor> {
        if self.histogram.len() != BINS {
            return Err(BadDescriptor(format!(
                "{} histogram bins, {BINS} expected",
                self.histogram.len()
            )));
        }
        if !self
            .histogram
            .iter()
            .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
        {
            return Err(BadDescriptor(
                "histogram values must be in [0, 1]".to_owned(),
            ));
        }
        Ok(())
    }

    /// How different two images look, in `[0, 1]`: 0.7 of the histograms'
    /// total variation distance plus 0.3 of the hashes' Hamming distance
    /// over 64.
    pub fn distance(&self, other: &Descriptor) -> f32 {
        let colour: f32 = self
            .histogram
            .iter()
            .zip(&other.histogram)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / 2.0;
        let shape = (self.dhash ^ other.dhash).count_ones() as f32 / 64.0;
        0.7 * colour.min(1.0) + 0.3 * shape
    }
}

/// The descriptor of an image.
pub fn describe(image: &Rgb) -> Descriptor {
    let mut counts = [0u64; BINS];
    for p in image.pixels.chunks_exact(3) {
        let bin = |v: u8| v as usize * LEVELS / 256;
        counts[(bin(p[0]) * LEVELS + bin(p[1])) * LEVELS + bin(p[2])] += 1;
    }
    let total = (image.width as u64 * image.height as u64).max(1) as f64;
    Descriptor {
        width: image.width,
        height: image.height,
        histogram: counts.iter().map(|&c| (c as f64 / total) as f32).collect(),
        dhash: dhash(image),
    }
}

/// The luminance shrunk to 9×8 by averaging boxes of pixels; bit `i` is
/// set when a cell is brighter than its right neighbour.
fn dhash(image: &Rgb) -> u64 {
    const W: u32 = 9;
    const H: u32 = 8;
    let mut cells = [[0f64; W as usize]; H as usize];
    for (cy, row) in cells.iter_mut().enumerate() {
        let y0 = cy as u32 * image.height / H;
        let y1 = ((cy as u32 + 1) * image.height / H).max(y0 + 1);
        for (cx, cell) in row.iter_mut().enumerate() {
            let x0 = cx as u32 * image.width / W;
            let x1 = ((cx as u32 + 1) * image.width / W).max(x0 + 1);
            let mut sum = 0.0;
            let mut n = 0.0;
            for y in y0..y1.min(image.height) {
                for x in x0..x1.min(image.width) {
                    let [r, g, b] = image.at(x, y);
                    sum += 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64;
                    n += 1.0;
                }
            }
            *cell = if n > 0.0 { sum / n } else { 0.0 };
        }
    }
    let mut hash = 0u64;
    for (y, row) in cells.iter().enumerate() {
        for x in 0..(W as usize - 1) {
            if row[x] > row[x + 1] {
                hash |= 1 << (y * 8 + x);
            }
        }
    }
    hash
}

mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 16 {
            return Err(D::Error::custom("dhash must be 16 hex digits"));
        }
        u64::from_str_radix(&s, 16).map_err(|_| D::Error::custom("dhash must be 16 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(width: u32, height: u32, rgb: [u8; 3]) -> Rgb {
        Rgb {
            width,
            height,
            pixels: rgb.repeat((width * height) as usize),
        }
    }

    #[test]
    fn a_flat_image_fills_one_bin_and_hashes_to_zero() {
        let d = describe(&flat(10, 7, [255, 0, 0]));
        assert_eq!(d.histogram.len(), BINS);
        assert_eq!(d.histogram[(3 * LEVELS) * LEVELS], 1.0);
        assert_eq!(d.histogram.iter().sum::<f32>(), 1.0);
        assert_eq!(d.dhash, 0);
        assert_eq!(d.distance(&d), 0.0);
    }

    #[test]
    fn a_left_to_right_fade_sets_every_hash_bit() {
        let width = 90;
        let pixels = (0..8 * width)
            .flat_map(|i| {
                let v = 255 - (i % width) as u8 * 2;
                [v, v, v]
            })
            .collect();
        let d = describe(&Rgb {
            width: width as u32,
            height: 8,
            pixels,
        });
        assert_eq!(d.dhash, u64::MAX);
    }

    #[test]
    fn distance_is_symmetric_and_bounded() {
        let a = describe(&flat(4, 4, [0, 0, 0]));
        let b = describe(&flat(4, 4, [255, 255, 255]));
        assert_eq!(a.distance(&b), b.distance(&a));
        assert!((a.distance(&b) - 0.7).abs() < 1e-6);
    }

    #[test]
    fn json_keeps_every_hash_bit_and_bad_input_is_refused() {
        let mut d = describe(&flat(2, 2, [9, 9, 9]));
        d.dhash = u64::MAX - 1;
        let text = serde_json::to_string(&d).unwrap();
        assert!(text.contains("\"fffffffffffffffe\""));
        let back: Descriptor = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
        back.check().unwrap();
        let mut short = d.clone();
        short.histogram.pop();
        assert!(short.check().is_err());
        let mut nan = d;
        nan.histogram[0] = f32::NAN;
        assert!(nan.check().is_err());
        assert!(
            serde_json::from_str::<Descriptor>(&text.replace("fffffffffffffffe", "xyz")).is_err()
        );
    }
}
