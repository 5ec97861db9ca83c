//! Prompt templates: `{article}`, `{subject}` and axis placeholders, rendered with the right indefinite
//! article ("an Asian doctor", "a European doctor").

use super::*;

/// The four templates of `templates.toml`.
#[derive(Clone, Debug)]
pub struct TemplateSet {
    pub evaluation: TemplatePair,
    pub training: TemplatePair,
}

/// A neutral template and its identity-specific counterpart.
#[derive(Clone, Debug)]
pub struct TemplatePair {
    pub neutral: Template,
    pub specific: Template,
}

impl TemplateSet {
    /// Parses `templates.toml` (`[evaluation]` and `[training]`, each with `neutral` and `specific`) and checks
    /// that each template can produce distinct prompts: every one names {occupation}, training templates name
    /// {scene} and evaluation ones do not, and neutral templates name no axis.
    pub fn from_toml(text: &str, vocabulary: &Vocabulary) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            neutral: String,
            specific: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            evaluation: Pair,
            training: Pair,
        }
        let file: File = parse_toml(text)?;
        let pair = |section: &str, pair: &Pair, scene: bool| -> Result<TemplatePair, String> {
            let neutral = Template::parse(&pair.neutral, vocabulary)
                .and_then(|t| t.check_role(vocabulary, scene, false).map(|()| t))
                .map_err(|e| format!("[{section}] neutral: {e}"))?;
            let specific = Template::parse(&pair.specific, vocabulary)
                .and_then(|t| t.check_role(vocabulary, scene, true).map(|()| t))
                .map_err(|e| format!("[{section}] specific: {e}"))?;
            Ok(TemplatePair { neutral, specific })
        };
        Ok(Self {
            evaluation: pair("evaluation", &file.evaluation, false)?,
            training: pair("training", &file.training, true)?,
        })
    }
}

/// A prompt template such as `"a photo of a {race} {gender} {occupation}"`.
///
/// Placeholders without a value render as nothing, together with their space, so one identity-specific
/// template serves any subset of the axes. A literal "a"/"an" directly before a placeholder is an article
/// slot: it becomes whichever article the first rendered word after it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    words: Vec<TemplateWord>,
}

/// One whitespace-separated word of a template, split into text and placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TemplateWord {
    pieces: Vec<Piece>,
    /// `Some(capitalised)` when this word is an article slot.
    article: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    Slot(String),
}

impl Template {
    /// Parses `source`, accepting only {occupation}, {scene} and the vocabulary's axis names.
    pub fn parse(source: &str, vocabulary: &Vocabulary) -> Result<Self, String> {
        let mut words: Vec<TemplateWord> = Vec::new();
        for word in source.split_whitespace() {
            let pieces = split_placeholders(word)?;
            for piece in &pieces {
                if let Piece::Slot(name) = piece {
                    check_placeholder(name, vocabulary)?;
                }
            }
            words.push(TemplateWord {
                pieces,
                article: None,
            });
        }
        if words.is_empty() {
            return Err("the template is empty".into());
        }
        mark_article_slots(&mut words);
        Ok(Self {
            source: source.to_string(),
            words,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template has a `{name}` placeholder.
    pub fn uses(&self, name: &str) -> bool {
        self.words
            .iter()
            .flat_map(|w| &w.pieces)
            .any(|p| matches!(p, Piece::Slot(s) if s == name))
    }

    /// Fills the placeholders from `values` (a missing one renders as nothing) and fixes the article slots.
    pub fn render(&self, values: &BTreeMap<&str, &str>) -> String {
        let mut rendered: Vec<(String, Option<bool>)> = Vec::with_capacity(self.words.len());
        for word in &self.words {
            let text: String = word
                .pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Text(text) => text.as_str(),
                    Piece::Slot(name) => values.get(name.as_str()).copied().unwrap_or(""),
                })
                .collect();
            let text = text.trim();
            if !text.is_empty() {
                rendered.push((text.to_string(), word.article));
            }
        }
        join_with_articles(&rendered)
    }

    /// Checks the placeholders a template needs for its role: {occupation} always, {scene} exactly in training
    /// templates, axes only in identity-specific ones.
    fn check_role(
        &self,
        vocabulary: &Vocabulary,
        scene: bool,
        specific: bool,
    ) -> Result<(), String> {
        if !self.uses(OCCUPATION) {
            return Err(format!("`{}` has no {{{OCCUPATION}}}", self.source));
        }
        if self.uses(SCENE) != scene {
            let verb = if scene { "needs" } else { "cannot use" };
            return Err(format!(
                "`{}`: this template {verb} {{{SCENE}}}",
                self.source
            ));
        }
        let axes: Vec<&str> = vocabulary
            .axes
            .iter()
            .map(|axis| axis.name.as_str())
            .filter(|name| self.uses(name))
            .collect();
        if !specific && !axes.is_empty() {
            return Err(format!(
                "`{}`: a neutral template names no attribute, found {{{}}}",
                self.source, axes[0]
            ));
        }
        Ok(())
    }
}

/// Splits one template word into literal text and `{name}` placeholders.
pub(super) fn split_placeholders(word: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = word;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("unmatched `}}` in `{word}`"));
        }
        let close = rest[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| format!("unmatched `{{` in `{word}`"))?;
        let name = &rest[open + 1..close];
        if name.contains('{') {
            return Err(format!("unmatched `{{` in `{word}`"));
        }
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        pieces.push(Piece::Slot(name.to_string()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

pub(super) fn check_placeholder(name: &str, vocabulary: &Vocabulary) -> Result<(), String> {
    if name == OCCUPATION || name == SCENE || vocabulary.axis(name).is_some() {
        return Ok(());
    }
    let mut known = vec![OCCUPATION, SCENE];
    known.extend(vocabulary.axis_names());
    Err(format!(
        "unknown placeholder {{{name}}} (known: {})",
        known.join(", ")
    ))
}

/// Marks each literal "a"/"an" that directly precedes a placeholder as an article slot.
pub(super) fn mark_article_slots(words: &mut [TemplateWord]) {
    for i in 0..words.len().saturating_sub(1) {
        let next_is_slot = matches!(words[i + 1].pieces.first(), Some(Piece::Slot(_)));
        if let [Piece::Text(text)] = words[i].pieces.as_slice()
            && next_is_slot
            && matches!(text.to_lowercase().as_str(), "a" | "an")
        {
            words[i].article = Some(text.starts_with('A'));
        }
    }
}

/// Joins rendered words, choosing each article slot's form from the word that follows it.
pub(super) fn join_with_articles(rendered: &[(String, Option<bool>)]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(rendered.len());
    for (i, (text, article)) in rendered.iter().enumerate() {
        let next = rendered
            .get(i + 1)
            .and_then(|(t, _)| t.split_whitespace().next());
        match (article, next) {
            (Some(capitalised), Some(next)) => {
                let article = indefinite_article(next);
                out.push(if *capitalised {
                    capitalise(article)
                } else {
                    article.to_string()
                });
            }
            _ => out.push(text.clone()),
        }
    }
    out.join(" ")
}

pub(super) fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// "a" or "an" for the word that follows, by its first sound: vowels take "an" except where they sound like
/// a consonant ("a university", "a European", "a one-off"); a silent h takes "an" ("an hour"); an acronym is
/// read letter by letter ("an HR manager", "a UX designer"). A heuristic for prompt text, not a dictionary.
pub fn indefinite_article(word: &str) -> &'static str {
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    let Some(first) = word.chars().next() else {
        return "a";
    };
    if is_acronym(word) {
        return if "AEFHILMNORSX".contains(first) {
            "an"
        } else {
            "a"
        };
    }
    if first == '8' {
        return "an";
    }
    let lower = word.to_lowercase();
    const SILENT_H: [&str; 5] = ["hour", "honest", "honor", "honour", "heir"];
    const VOWEL_BUT_CONSONANT_SOUND: [&str; 12] = [
        "uni", "use", "usu", "uti", "ura", "ure", "uri", "uro", "eu", "ewe", "one", "once",
    ];
    const UN_PREFIXED: [&str; 3] = ["unin", "unim", "unid"];
    if SILENT_H.iter().any(|p| lower.starts_with(p)) {
        return "an";
    }
    if UN_PREFIXED.iter().any(|p| lower.starts_with(p)) {
        return "an";
    }
    if VOWEL_BUT_CONSONANT_SOUND
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return "a";
    }
    if lower.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Two or more leading capitals ("HR", "UX", "CEO"): the word is spelled out.
pub(super) fn is_acronym(word: &str) -> bool {
    let letters: Vec<char> = word.chars().take_while(|c| c.is_alphanumeric()).collect();
    letters.len() >= 2
        && letters
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}
