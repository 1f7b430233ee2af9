//! What a search's words become in SQL: terms for the search index, and the words it cannot
//! answer by itself, checked against the texts.
//!
//! The index (FTS5, `detail=none` since schema 13) records which rows hold a token, not
//! where: it cannot match a phrase, and a quoted string its tokenizer splits in two is a
//! phrase (an error, "phrase queries are not supported"). So each word is split into the
//! tokenizer's tokens and every token must be in the row. A word of ASCII that holds
//! punctuation inside it (`std::sync`, `gpt-4o`, `a/b`) must also appear as typed in
//! the prompt or the answer, in any case: the index alone would find its tokens anywhere.
//! Punctuation around a word (`"error:`, `(foo)`) and apostrophes (`don't`, also written
//! `don’t`) are not asked for; nor is a word with other letters (SQLite's `lower` folds only
//! ASCII, and its accents would have to match): those match by their tokens alone. A word
//! with no token at all (`::`) is looked for as text.

use rusqlite::Connection;

/// A search: index terms, and words to find in the texts.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Search {
    /// An FTS5 query: the words' tokens, quoted, all required.
    pub terms: Option<String>,
    /// Words to find as typed in the prompt or the answer.
    pub literals: Vec<String>,
    /// Every word searched for.
    pub words: Vec<String>,
}

/// Terms and words checked as text a search keeps at most, the longest: each one only
/// narrows what the others select, and SQLite limits a statement's depth (a pasted page of
/// code would otherwise be refused).
const MOST_TERMS: usize = 64;
const MOST_LITERALS: usize = 32;

impl Search {
    /// The search for rows holding every word of `text`.
    pub fn of(text: &str) -> rusqlite::Result<Self> {
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        let tokens = tokens_of(&words)?;
        let mut terms = Vec::new();
        let mut literals = Vec::new();
        for (word, tokens) in words.iter().zip(tokens) {
            if let Some(literal) = literal_of(word, tokens.len()) {
                literals.push(literal.to_owned());
            }
            terms.extend(tokens);
        }
        keep_longest(&mut terms, MOST_TERMS);
        keep_longest(&mut literals, MOST_LITERALS);
        Ok(Self {
            // A token never holds a `"` (a separator), so quoting is enough.
            terms: (!terms.is_empty()).then(|| {
                let quoted: Vec<String> = terms.iter().map(|t| format!("\"{t}\"")).collect();
                quoted.join(" ")
            }),
            literals,
            words,
        })
    }

    /// The same search without the index: every word found as typed (a scan of the texts).
    pub fn as_text(&self) -> Self {
        let mut literals = self.words.clone();
        keep_longest(&mut literals, MOST_LITERALS);
        Self {
            terms: None,
            literals,
            words: self.words.clone(),
        }
    }

    /// The clauses on `requests` (ANDed) and their arguments, in order.
    pub fn clauses(&self) -> (Vec<&'static str>, Vec<String>) {
        let mut clauses = Vec::new();
        let mut args = Vec::new();
        if let Some(terms) = &self.terms {
            clauses.push("rowid IN (SELECT rowid FROM requests_fts WHERE requests_fts MATCH ?)");
            args.push(terms.clone());
        }
        for literal in &self.literals {
            // With terms, checked only on the rows the index selected.
            clauses.push(
                "(instr(lower(prompt_text), lower(?)) > 0 \
                  OR instr(lower(response_text), lower(?)) > 0)",
            );
            args.extend([literal.clone(), literal.clone()]);
        }
        (clauses, args)
    }
}

/// Drops repeats (the first stays in its place) and, past `most`, the shortest.
fn keep_longest(items: &mut Vec<String>, most: usize) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|item| seen.insert(item.clone()));
    if items.len() > most {
        items.sort_by_key(|item| std::cmp::Reverse(item.len()));
        items.truncate(most);
    }
}

/// What of `word` (split into `tokens` tokens) must appear as typed: all of it when the
/// index has nothing to find it by (`::`, an emoji); else the word without the punctuation
/// around it, when that is ASCII and holds punctuation other than apostrophes (which agents
/// write curly as often as straight).
fn literal_of(word: &str, tokens: usize) -> Option<&str> {
    if tokens == 0 {
        return Some(word);
    }
    let core = word.trim_matches(|c: char| c.is_ascii_punctuation());
    let inner = core.bytes().any(|b| b.is_ascii_punctuation() && b != b'\'');
    (core.is_ascii() && inner).then_some(core)
}

/// Each word's tokens as the index's tokenizer makes them (folded: lower case, no
/// diacritics), in order. SQLite itself splits them, in a table made like the index (the
/// default tokenizer, unicode61) in a database of its own in memory: rules written here
/// would drift from its Unicode tables (combining marks, letters it does not know).
fn tokens_of(words: &[String]) -> rusqlite::Result<Vec<Vec<String>>> {
    let connection = Connection::open_in_memory()?;
    connection.execute_batch(
        "CREATE VIRTUAL TABLE words USING fts5(word);
         CREATE VIRTUAL TABLE tokens USING fts5vocab(words, instance);",
    )?;
    let mut insert = connection.prepare("INSERT INTO words (rowid, word) VALUES (?, ?)")?;
    for (i, word) in words.iter().enumerate() {
        insert.execute(rusqlite::params![i as i64, word])?;
    }
    let mut tokens = vec![Vec::new(); words.len()];
    let mut select = connection.prepare("SELECT doc, term FROM tokens ORDER BY doc, offset")?;
    let rows = select.query_map([], |row| Ok((row.get::<_, usize>(0)?, row.get(1)?)))?;
    for row in rows {
        let (word, token) = row?;
        if let Some(tokens) = tokens.get_mut(word) {
            tokens.push(token);
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Query, RequestRow, Store};
    use super::*;

    fn terms(text: &str) -> (Option<String>, Vec<String>) {
        let search = Search::of(text).unwrap();
        (search.terms, search.literals)
    }

    #[test]
    fn plain_words_are_index_terms_only_folded_as_the_index_folds_them() {
        assert_eq!(
            terms("sort  Vector café"),
            (Some("\"sort\" \"vector\" \"cafe\"".into()), vec![])
        );
    }

    #[test]
    fn a_word_the_tokenizer_splits_is_also_checked_as_text() {
        assert_eq!(
            terms("std::sync gpt-4o"),
            (
                Some("\"std\" \"sync\" \"gpt\" \"4o\"".into()),
                vec!["std::sync".into(), "gpt-4o".into()]
            )
        );
    }

    #[test]
    fn punctuation_and_quotes_never_reach_the_index() {
        assert_eq!(
            terms("\"AND( * :: !/backend (and)"),
            (
                Some("\"and\" \"backend\"".into()),
                vec!["*".into(), "::".into()]
            )
        );
        assert_eq!(terms("::"), (None, vec!["::".into()]));
    }

    #[test]
    fn punctuation_around_a_word_and_apostrophes_are_not_asked_for() {
        assert_eq!(terms("\"error:"), (Some("\"error\"".into()), vec![]));
        assert_eq!(terms("don't"), (Some("\"don\" \"t\"".into()), vec![]));
        assert_eq!(
            terms("(a-a)"),
            (Some("\"a\"".into()), vec!["a-a".into()]),
            "the punctuation inside is"
        );
    }

    #[test]
    fn words_of_other_letters_match_by_their_tokens_alone() {
        // U+0947 (a vowel sign) is a separator to unicode61, so "केक" is two tokens there;
        // U+0300 (a combining grave) is a diacritic it drops.
        assert_eq!(terms("केक"), (Some("\"क\"".into()), vec![]));
        assert_eq!(terms("cafe\u{0300}s"), (Some("\"cafes\"".into()), vec![]));
        assert_eq!(
            terms("Über-Nutzer"),
            (Some("\"uber\" \"nutzer\"".into()), vec![])
        );
    }

    #[test]
    fn a_long_search_keeps_its_longest_terms_and_words() {
        let text: Vec<String> = (0..500).map(|i| format!("w{i}::x{i}")).collect();
        let search = Search::of(&text.join(" ")).unwrap();
        let terms = search.terms.clone().unwrap();
        assert_eq!(terms.split(' ').count(), MOST_TERMS);
        assert!(terms.contains("\"w100\""), "{terms}");
        assert_eq!(search.literals.len(), MOST_LITERALS);
        assert!(
            search
                .literals
                .iter()
                .all(|l| l.len() == "w100::x100".len())
        );
        assert_eq!(search.as_text().literals.len(), MOST_LITERALS);
    }

    /// A store holding one request per (prompt, answer).
    fn store_of(dir: &std::path::Path, texts: &[(&str, &str)]) -> Store {
        let store = Store::open(
            dir.join("capture.db"),
            Duration::from_millis(20),
            Vec::new(),
        )
        .unwrap();
        for (i, (prompt, answer)) in texts.iter().enumerate() {
            store.insert(RequestRow {
                id: format!("req_{i}"),
                started_at: super::super::unix_seconds() + i as f64,
                prompt_text: (*prompt).into(),
                response_text: (*answer).into(),
                ..RequestRow::default()
            });
        }
        store.flush(Duration::from_secs(5));
        store
    }

    fn query() -> Query {
        Query {
            limit: 100,
            ..Query::default()
        }
    }

    fn ids(rows: Vec<RequestRow>) -> Vec<String> {
        rows.into_iter().rev().map(|r| r.id).collect()
    }

    /// The ids of the requests a search for `text` finds, oldest first.
    fn found(store: &Store, text: &str) -> Vec<String> {
        let query = Query {
            text: Some(text.into()),
            ..query()
        };
        ids(store.list(&query).unwrap())
    }

    #[test]
    fn a_split_word_finds_the_requests_holding_it_as_typed_in_any_ascii_case() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(
            dir.path(),
            &[
                ("use std::sync::Arc;", ""),
                ("the std lib and sync io", ""),
                ("", "try STD::SYNC::Mutex"),
                ("std sync", "gpt-4o said so"),
            ],
        );
        assert_eq!(found(&store, "std::sync"), ["req_0", "req_2"]);
        assert_eq!(found(&store, "Std::Sync arc"), ["req_0"]);
        assert_eq!(found(&store, "sync"), ["req_0", "req_1", "req_2", "req_3"]);
        assert_eq!(found(&store, "GPT-4o"), ["req_3"]);
        assert_eq!(found(&store, "gpt"), ["req_3"]);
        assert!(found(&store, "gpt-4").is_empty(), "4o is one token");
    }

    #[test]
    fn an_apostrophe_or_a_colon_does_not_hide_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(
            dir.path(),
            &[("I don\u{2019}t know", ""), ("", "error here")],
        );
        assert_eq!(found(&store, "don't"), ["req_0"]);
        assert_eq!(found(&store, "error:"), ["req_1"]);
    }

    #[test]
    fn a_pasted_page_of_code_is_searched_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let page: Vec<String> = (0..2000).map(|i| format!("f{i}(x);")).collect();
        let store = store_of(dir.path(), &[(&page.join(" "), ""), ("f1(x);", "")]);
        assert_eq!(found(&store, &page.join(" ")), ["req_0"]);
    }

    #[test]
    fn punctuation_alone_is_looked_for_as_text_and_never_read_as_index_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(
            dir.path(),
            &[
                ("a::b", ""),
                ("!/backend(openai) please", ""),
                ("plain", ""),
            ],
        );
        assert_eq!(found(&store, "::"), ["req_0"]);
        assert_eq!(found(&store, "!/backend("), ["req_1"]);
        assert!(found(&store, "\"AND( * NEAR(").is_empty());
        assert_eq!(
            found(&store, "\"plain\""),
            ["req_2"],
            "quotes around a word"
        );
    }

    #[test]
    fn other_scripts_match_by_token_as_the_index_folds_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(
            dir.path(),
            &[
                ("एक केक दो", ""),
                ("क", ""),
                ("Ein Café bitte", ""),
                ("Привет мир", ""),
                ("x\u{19B0}y", ""),
            ],
        );
        // By its tokens: "क" is one of them, and "क" alone matches too.
        assert_eq!(found(&store, "केक"), ["req_0", "req_1"]);
        assert_eq!(found(&store, "cafe"), ["req_2"], "diacritics are folded");
        assert_eq!(found(&store, "CAFÉ"), ["req_2"]);
        assert_eq!(found(&store, "привет"), ["req_3"], "case is folded");
        // U+19B0 is a letter since Unicode 8, a mark (a separator) to unicode61.
        assert_eq!(found(&store, "x\u{19B0}y"), ["req_4"]);
    }

    #[test]
    fn a_search_the_index_refuses_is_answered_from_the_texts() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(dir.path(), &[("a x-y b", ""), ("x y", "")]);
        // A phrase, as an older llmux sent: `detail=none` refuses it.
        let phrase = Search {
            terms: Some("\"x y\"".into()),
            literals: Vec::new(),
            words: vec!["x-y".into()],
        };
        let refused = store.list_matching(&query(), Some(&phrase));
        assert!(refused.is_err(), "{refused:?}");
        let found = store.list_searching(&query(), &phrase).unwrap();
        assert_eq!(ids(found), ["req_0"]);
    }
}
