//! Draws toy images: the occupation's background with a little noise, and one centred figure.

use super::world::{Figure, SIZE, World};

/// Radius of a round figure (pixel centres within it are inside). Chosen so the disc leaves the three
/// outermost pixels of each corner of the square's 10×10 box empty: that is what tells the shapes apart.
pub const DISC_RADIUS: f32 = 5.6;
/// The square figure covers rows and columns `SQUARE.0..SQUARE.1`.
pub const SQUARE: (usize, usize) = (3, 13);
/// Standard deviation of the per-pixel background noise, in [0, 1] units.
const BACKGROUND_NOISE: f32 = 0.03;

/// Whether pixel (y, x) belongs to the figure of `shape` (0 round, 1 square).
pub fn inside(shape: usize, y: usize, x: usize) -> bool {
    let centre = (SIZE as f32 - 1.0) / 2.0;
    match shape {
        0 => {
            let (dy, dx) = (y as f32 - centre, x as f32 - centre);
            dy * dy + dx * dx <= DISC_RADIUS * DISC_RADIUS
        }
        _ => (SQUARE.0..SQUARE.1).contains(&y) && (SQUARE.0..SQUARE.1).contains(&x),
    }
}

/// A `[3, SIZE, SIZE]` image in [-1, 1] (channel-major, as the U-Net takes it). `noise` yields standard
/// normal draws; it is consumed for the background pixels only.
pub fn render(
    world: &World,
    occupation: usize,
    figure: Figure,
    mut noise: impl FnMut() -> f32,
) -> Vec<f32> {
    let background = world.occupations[occupation].background;
    let colour = world.colours[figure.colour].rgb;
    let mut image = vec![0.0; 3 * SIZE * SIZE];
    for y in 0..SIZE {
        for x in 0..SIZE {
            let figure_pixel = inside(figure.shape, y, x);
            for c in 0..3 {
                let value = if figure_pixel {
                    colour[c]
                } else {
                    (background[c] + BACKGROUND_NOISE * noise()).clamp(0.0, 1.0)
                };
                image[(c * SIZE + y) * SIZE + x] = value * 2.0 - 1.0;
            }
        }
    }
    image
}
