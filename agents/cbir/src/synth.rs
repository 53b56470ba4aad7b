//! Synthetic photographs for tests and experiments: seeded scenes of a
//! sky-to-ground gradient with coloured discs and boxes, and variants of a
//! scene (shifted brightness, sensor noise, a nudged object) that a good
//! retrieval finds again.

use crate::image::Rgb;

/// A splitmix64 generator: small, seeded, the same on every platform.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn colour(&mut self) -> [u8; 3] {
        let v = self.next();
        [v as u8, (v >> 8) as u8, (v >> 16) as u8]
    }
}

/// Scene `seed` at `width`×`height`.
pub fn scene(seed: u64, width: u32, height: u32) -> Rgb {
    variant(seed, 0, width, height)
}

/// Variant `n` of scene `seed`; variant 0 is the scene itself.
pub fn variant(seed: u64, n: u64, width: u32, height: u32) -> Rgb {
    let mut scene = Mix(seed);
    let top = scene.colour();
    let bottom = scene.colour();
    let shapes: Vec<(bool, i64, i64, i64, [u8; 3])> = (0..3 + scene.below(4))
        .map(|_| {
            let round = scene.below(2) == 0;
            let x = scene.below(width.into()) as i64;
            let y = scene.below(height.into()) as i64;
            let r = (width.min(height) as u64 / 8 + scene.below(width.min(height) as u64 / 4 + 1))
                as i64;
            (round, x, y, r, scene.colour())
        })
        .collect();
    let mut noise = Mix(seed ^ n.wrapping_mul(0xa076_1d64_78bd_642f));
    let (shift, nudge) = if n == 0 {
        (0, 0)
    } else {
        (noise.below(17) as i64 - 8, noise.below(5) as i64 - 2)
    };
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            let t = y as f64 / height.max(1) as f64;
            let mut c = [0u8; 3];
            for i in 0..3 {
                c[i] = (top[i] as f64 * (1.0 - t) + bottom[i] as f64 * t) as u8;
            }
            for &(round, sx, sy, r, colour) in &shapes {
                let (dx, dy) = (x - sx - nudge, y - sy);
                let inside = if round {
                    dx * dx + dy * dy <= r * r
                } else {
                    dx.abs() <= r && dy.abs() <= r / 2
                };
                if inside {
                    c = colour;
                }
            }
            for v in c {
                let jitter = if n == 0 { 0 } else { noise.below(7) as i64 - 3 };
                pixels.push((v as i64 + shift + jitter).clamp(0, 255) as u8);
            }
        }
    }
    Rgb {
        width,
        height,
        pixels,
    }
}
