//! Deep links: the URL's fragment names the view (`#/` overview, `#/prompt/N` the N-th prompt of the report).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Overview,
    /// Index into the report's prompts in order of first appearance.
    Prompt(usize),
}

impl Route {
    /// Reads `location.hash`; anything unknown is the overview.
    pub fn parse(hash: &str) -> Self {
        let path = hash.trim_start_matches('#').trim_start_matches('/');
        path.strip_prefix("prompt/")
            .and_then(|i| i.parse().ok())
            .map_or(Route::Overview, Route::Prompt)
    }

    pub fn href(self) -> String {
        match self {
            Route::Overview => "#/".into(),
            Route::Prompt(i) => format!("#/prompt/{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_round_trip() {
        for route in [Route::Overview, Route::Prompt(0), Route::Prompt(17)] {
            assert_eq!(Route::parse(&route.href()), route);
        }
        assert_eq!(Route::parse(""), Route::Overview);
        assert_eq!(Route::parse("#/prompt/x"), Route::Overview);
        assert_eq!(Route::parse("#/prompt/-1"), Route::Overview);
    }
}
