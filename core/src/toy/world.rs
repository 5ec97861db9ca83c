//! What exists in the toy world: occupations with their backgrounds, and the two attribute axes.

/// Side of a toy image in pixels.
pub const SIZE: usize = 16;

/// RGB in [0, 1].
pub type Rgb = [f32; 3];

pub struct Occupation {
    pub name: &'static str,
    pub background: Rgb,
    /// Share of neutral-prompt training images with a `tall` figure (the gender-like bias).
    pub tall_share: f64,
}

pub struct AttributeValue {
    /// The class label classifiers output and CSVs store.
    pub label: &'static str,
    /// The word used in prompts (here the same as the label).
    pub word: &'static str,
}

pub struct Colour {
    pub value: AttributeValue,
    pub rgb: Rgb,
}

pub struct World {
    pub occupations: &'static [Occupation],
    /// Plays the role of gender.
    pub shapes: [AttributeValue; 2],
    /// Plays the role of race.
    pub colours: [Colour; 6],
    /// Share of neutral-prompt training images drawn in `colours[0]`; the rest are spread evenly.
    pub dominant_colour_share: f64,
}

/// One figure: indices into `shapes` and `colours`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Figure {
    pub shape: usize,
    pub colour: usize,
}

const fn value(label: &'static str) -> AttributeValue {
    AttributeValue { label, word: label }
}

const fn occupation(name: &'static str, background: Rgb, tall_share: f64) -> Occupation {
    Occupation {
        name,
        background,
        tall_share,
    }
}

/// Saturated figure colours against muted backgrounds, so the two never blur into each other.
pub const TOY: World = World {
    occupations: &[
        occupation("doctor", [0.78, 0.84, 0.90], 0.15),
        occupation("nurse", [0.86, 0.72, 0.78], 0.85),
        occupation("teacher", [0.55, 0.44, 0.34], 0.80),
        occupation("engineer", [0.42, 0.42, 0.42], 0.10),
        occupation("chef", [0.95, 0.95, 0.88], 0.20),
        occupation("pilot", [0.28, 0.33, 0.50], 0.10),
        occupation("farmer", [0.58, 0.60, 0.34], 0.15),
        occupation("lawyer", [0.24, 0.18, 0.18], 0.25),
    ],
    shapes: [value("tall"), value("wide")],
    colours: [
        Colour {
            value: value("red"),
            rgb: [0.86, 0.14, 0.14],
        },
        Colour {
            value: value("yellow"),
            rgb: [0.92, 0.82, 0.10],
        },
        Colour {
            value: value("green"),
            rgb: [0.14, 0.66, 0.20],
        },
        Colour {
            value: value("blue"),
            rgb: [0.14, 0.30, 0.88],
        },
        Colour {
            value: value("purple"),
            rgb: [0.62, 0.18, 0.78],
        },
        Colour {
            value: value("orange"),
            rgb: [0.98, 0.52, 0.04],
        },
    ],
    dominant_colour_share: 0.65,
};

impl World {
    pub fn occupation_index(&self, name: &str) -> Option<usize> {
        self.occupations.iter().position(|o| o.name == name)
    }

    /// `"a photo of a nurse"`.
    pub fn neutral_prompt(&self, occupation: usize) -> String {
        format!(
            "a photo of {}",
            with_article(self.occupations[occupation].name)
        )
    }

    /// `"a photo of an orange tall nurse"`.
    pub fn specific_prompt(&self, occupation: usize, figure: Figure) -> String {
        let words = format!(
            "{} {} {}",
            self.colours[figure.colour].value.word,
            self.shapes[figure.shape].word,
            self.occupations[occupation].name
        );
        format!("a photo of {}", with_article(&words))
    }

    /// Every (shape, colour) combination, shape-major: the balanced identity set.
    pub fn all_figures(&self) -> Vec<Figure> {
        (0..self.shapes.len())
            .flat_map(|shape| (0..self.colours.len()).map(move |colour| Figure { shape, colour }))
            .collect()
    }

    /// The biased figure of a neutral-prompt training image, from two uniform draws in [0, 1).
    pub fn biased_figure(&self, occupation: usize, u_shape: f64, u_colour: f64) -> Figure {
        let shape = usize::from(u_shape >= self.occupations[occupation].tall_share);
        let rest = (1.0 - self.dominant_colour_share) / (self.colours.len() - 1) as f64;
        let colour = if u_colour < self.dominant_colour_share {
            0
        } else {
            1 + (((u_colour - self.dominant_colour_share) / rest) as usize)
                .min(self.colours.len() - 2)
        };
        Figure { shape, colour }
    }
}

/// `"a nurse"`, `"an orange tall nurse"`: the article English puts before `words`.
fn with_article(words: &str) -> String {
    format!(
        "{} {words}",
        crate::align::prompts::indefinite_article(words)
    )
}
