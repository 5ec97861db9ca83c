//! Draws toy images: the occupation's background with a little noise, and one centred figure.

use super::world::{Figure, SIZE, World};

/// A figure is a bar `BAR_LONG` pixels long and `BAR_SHORT` wide, standing (`tall`, shape 0) or lying
/// (`wide`, shape 1). Both cover 72 pixels and share the 6×6 centre, so colour is equally visible for
/// either shape, and the shapes differ in 72 pixels (36 on each side of the centre): about as many
/// pixels as a change of colour alters. An earlier disc-or-square pair differed in 20 corner pixels only,
/// and fine-tuning then moved colour but hardly shape.
pub const BAR_LONG: (usize, usize) = (2, 14);
pub const BAR_SHORT: (usize, usize) = (5, 11);
/// Standard deviation of the per-pixel background noise, in [0, 1] units.
const BACKGROUND_NOISE: f32 = 0.03;

/// Whether pixel (y, x) belongs to the figure of `shape` (0 tall, 1 wide).
pub fn inside(shape: usize, y: usize, x: usize) -> bool {
    let long = |v: usize| (BAR_LONG.0..BAR_LONG.1).contains(&v);
    let short = |v: usize| (BAR_SHORT.0..BAR_SHORT.1).contains(&v);
    match shape {
        0 => long(y) && short(x),
        _ => short(y) && long(x),
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
