//! Reasoning effort <-> Gemini thinking budgets and levels.
//!
//! Gemini 2.5 takes `thinkingConfig.thinkingBudget` (tokens; `0` off, `-1` dynamic);
//! Gemini 3 takes `thinkingLevel` (`low`/`high` on Pro, also `minimal`/`medium` on
//! Flash) and still accepts a budget. Sending both is a 400 (PROTOCOLS.md §3.4).
//!
//! | effort | `thinkingBudget` | Gemini 3 Pro level | Gemini 3 Flash level |
//! |---|---|---|---|
//! | none | 0 | low | minimal |
//! | minimal | 512 | low | minimal |
//! | low | 1024 | low | low |
//! | medium | 8192 | high | medium |
//! | high | 24576 | high | high |
//! | xhigh | 24576 | high | high |
//!
//! 24576 is the largest budget every 2.5 model accepts (2.5 Flash's maximum; 2.5 Pro
//! goes to 32768). litellm's defaults (1024/2048/4096) are sized for Claude and would cap
//! Gemini far below what it does on its own. Gemini 3 cannot turn thinking off, so
//! `none` asks for the least thinking it offers.
//!
//! Budgets from other protocols are fitted to the model ([`fit_budget`]): 2.5 Pro takes
//! 128..=32768 (it cannot turn thinking off), other models 0..=24576.
//!
//! Budgets read back as efforts by thresholds around the same table: `0` none,
//! `1..=512` minimal, `..=2048` low, `..=12288` medium, above that high. `-1` (dynamic)
//! has no effort: it is the model's default.

use crate::model::ReasoningEffort;

/// The budget sent for an effort.
pub fn budget_for_effort(effort: ReasoningEffort) -> i64 {
    match effort {
        ReasoningEffort::None => 0,
        ReasoningEffort::Minimal => 512,
        ReasoningEffort::Low => 1024,
        ReasoningEffort::Medium => 8192,
        ReasoningEffort::High | ReasoningEffort::XHigh => 24576,
    }
}

/// The effort a budget stands for; `None` for `-1` (dynamic) and other negatives.
pub fn effort_for_budget(budget: i64) -> Option<ReasoningEffort> {
    Some(match budget {
        i64::MIN..=-1 => return None,
        0 => ReasoningEffort::None,
        1..=512 => ReasoningEffort::Minimal,
        513..=2048 => ReasoningEffort::Low,
        2049..=12288 => ReasoningEffort::Medium,
        _ => ReasoningEffort::High,
    })
}

/// A budget fitted to what `model` accepts: 2.5 Pro cannot turn thinking off (its
/// minimum is 128) and goes up to 32768; other models go up to 24576. `-1` (dynamic)
/// passes.
pub fn fit_budget(budget: i64, model: &str) -> i64 {
    if budget < 0 {
        return -1;
    }
    let pro = model.contains("-pro");
    let (min, max) = if pro { (128, 32768) } else { (0, 24576) };
    budget.clamp(min, max)
}

/// Whether `model` takes thinking levels (Gemini 3 and later).
pub fn uses_levels(model: &str) -> bool {
    let model = model.strip_prefix("models/").unwrap_or(model);
    model
        .strip_prefix("gemini-")
        .and_then(|rest| rest.split(['-', '.']).next())
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 3)
}

/// The level sent for an effort to a model that takes levels.
pub fn level_for_effort(effort: ReasoningEffort, model: &str) -> &'static str {
    let flash = model.contains("flash");
    match (effort, flash) {
        (ReasoningEffort::None | ReasoningEffort::Minimal, true) => "minimal",
        (ReasoningEffort::Medium, true) => "medium",
        (ReasoningEffort::None | ReasoningEffort::Minimal | ReasoningEffort::Low, _) => "low",
        (ReasoningEffort::Medium | ReasoningEffort::High | ReasoningEffort::XHigh, _) => "high",
    }
}

/// The effort a level names (`LOW` and `low` alike); `None` for a level we do not know.
pub fn effort_for_level(level: &str) -> Option<ReasoningEffort> {
    match level.to_ascii_lowercase().as_str() {
        "minimal" => Some(ReasoningEffort::Minimal),
        "low" => Some(ReasoningEffort::Low),
        "medium" => Some(ReasoningEffort::Medium),
        "high" => Some(ReasoningEffort::High),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_effort_reads_back_from_its_budget() {
        for effort in [
            ReasoningEffort::None,
            ReasoningEffort::Minimal,
            ReasoningEffort::Low,
            ReasoningEffort::Medium,
            ReasoningEffort::High,
        ] {
            assert_eq!(effort_for_budget(budget_for_effort(effort)), Some(effort));
        }
        assert_eq!(
            effort_for_budget(budget_for_effort(ReasoningEffort::XHigh)),
            Some(ReasoningEffort::High)
        );
        assert_eq!(effort_for_budget(-1), None);
        assert_eq!(effort_for_budget(4096), Some(ReasoningEffort::Medium));
        assert_eq!(effort_for_budget(32768), Some(ReasoningEffort::High));
    }

    #[test]
    fn budgets_fit_the_model() {
        assert_eq!(fit_budget(0, "gemini-2.5-pro"), 128);
        assert_eq!(fit_budget(0, "gemini-2.5-flash"), 0);
        assert_eq!(fit_budget(64000, "gemini-2.5-flash"), 24576);
        assert_eq!(fit_budget(64000, "gemini-2.5-pro"), 32768);
        assert_eq!(fit_budget(-1, "gemini-2.5-pro"), -1);
    }

    #[test]
    fn gemini_3_models_take_levels() {
        assert!(uses_levels("gemini-3-pro-preview"));
        assert!(uses_levels("models/gemini-3.5-flash"));
        assert!(!uses_levels("gemini-2.5-flash"));
        assert!(!uses_levels("gemma-3-27b-it"));
        assert_eq!(
            level_for_effort(ReasoningEffort::Medium, "gemini-3-pro"),
            "high"
        );
        assert_eq!(
            level_for_effort(ReasoningEffort::Medium, "gemini-3-flash"),
            "medium"
        );
        assert_eq!(
            level_for_effort(ReasoningEffort::None, "gemini-3-pro"),
            "low"
        );
        assert_eq!(effort_for_level("HIGH"), Some(ReasoningEffort::High));
        assert_eq!(effort_for_level("extreme"), None);
    }
}
