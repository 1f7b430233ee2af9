//! `llmux config import FILE`: a seed config (YAML, with its back-end files) written once as
//! llmux TOML. The file is loaded and checked as `--config FILE` would be, without the
//! environment, so whatever llmux cannot carry over is refused naming the key; the TOML says
//! in comments where each value came from when that is not the file itself (a back-end file,
//! a key the seed names differently).

use std::collections::BTreeMap;
use std::path::Path;

use super::layers::Source;
use super::{ConfigError, ConfigLoader};

/// The TOML equivalent of the config file at `path`.
pub fn import(path: &Path) -> Result<String, ConfigError> {
    let loaded = ConfigLoader::new().file(path, true).env(|_| None).load()?;
    let mut comments: BTreeMap<String, String> = BTreeMap::new();
    for (key, source) in &loaded.layered.sources {
        if let Source::File(file) = source
            && file != path
        {
            comments.insert(key.clone(), format!("from {}", file.display()));
        }
    }
    for (seed, llmux) in &loaded.renamed {
        comments.insert((*llmux).to_owned(), format!("the seed's {seed}"));
    }
    let text = toml::to_string(&loaded.layered.table).map_err(|e| ConfigError {
        problems: vec![format!("cannot write {} as TOML: {e}", path.display())],
    })?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| ConfigError {
        problems: vec![format!("cannot write {} as TOML: {e}", path.display())],
    })?;
    annotate(doc.as_table_mut(), "", &comments);
    let header = format!(
        "# llmux configuration, imported from {} by `llmux config import`.\n\
         # Values come from that file unless a comment says otherwise; llmux's defaults apply\n\
         # to everything not set here (config/llmux.example.toml lists them).\n\n",
        path.display()
    );
    Ok(header + &doc.to_string())
}

/// Puts each key's comment on the line before it.
fn annotate(table: &mut toml_edit::Table, prefix: &str, comments: &BTreeMap<String, String>) {
    for (mut key, item) in table.iter_mut() {
        let path = if prefix.is_empty() {
            key.get().to_owned()
        } else {
            format!("{prefix}.{}", key.get())
        };
        match item {
            toml_edit::Item::Table(inner) => annotate(inner, &path, comments),
            _ => {
                if let Some(comment) = comments.get(&path) {
                    key.leaf_decor_mut().set_prefix(format!("# {comment}\n"));
                }
            }
        }
    }
}
