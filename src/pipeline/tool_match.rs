//! What a tool call does, read once for every stage that cares: whether a tool writes files
//! (the planning phase), whether it runs shell commands, and which commands (dangerous
//! command prevention). Agents name the same tools differently (Claude Code's `Bash`,
//! Codex's `shell` with an argv array, Cline's `execute_command`, Cursor's
//! `run_terminal_cmd`), so names compare without case, `_` or `-`.

use serde_json::Value;

use crate::model::{Part, Request, Role};

/// Tools that write files, in the agents people run through llmux.
const FILE_WRITING_TOOLS: &[&str] = &[
    "write",
    "edit",
    "multiedit",
    "writefile",
    "editfile",
    "createfile",
    "applydiff",
    "applypatch",
    "patch",
    "writetofile",
    "replaceinfile",
    "insertcontent",
    "searchandreplace",
    "strreplaceeditor",
    "strreplacebasededittool",
    "notebookedit",
];

/// Tools that run shell commands.
const SHELL_TOOLS: &[&str] = &[
    "bash",
    "shell",
    "localshell",
    "exec",
    "execute",
    "executecommand",
    "runcommand",
    "runterminalcmd",
    "runterminalcommand",
    "runshellcommand",
    "terminal",
    "command",
    "cmd",
    "sh",
    "powershell",
];

/// A tool's name as compared: lower case, without `_`, `-` and spaces.
pub fn normalized_name(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether a tool call by this name writes files.
pub fn writes_files(tool: &str) -> bool {
    FILE_WRITING_TOOLS.contains(&normalized_name(tool).as_str())
}

/// Whether a tool call by this name runs shell commands.
pub fn runs_shell(tool: &str) -> bool {
    SHELL_TOOLS.contains(&normalized_name(tool).as_str())
}

/// A call's JSON arguments in one spelling, so key order and spacing do not make two
/// identical calls look different.
pub fn normalized_arguments(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| arguments.trim().to_owned())
}

/// The parts of the conversation since the user last wrote (a user message with text, not
/// only tool results), the latest first: the model's calls and what came back.
pub fn since_user_wrote(request: &Request) -> impl Iterator<Item = &Part> {
    request
        .messages
        .iter()
        .rev()
        .take_while(|m| {
            !(m.role == Role::User && m.parts.iter().any(|p| matches!(p, Part::Text { .. })))
        })
        .flat_map(|m| m.parts.iter().rev())
}

/// Argument keys that hold a command to run.
const COMMAND_KEYS: &[&str] = &["command", "cmd", "commands", "script", "args", "argv"];

/// The shell scripts a shell tool call's JSON arguments run: strings under command-like
/// keys, at any depth (`{"input": {"command": ...}}`), argv arrays joined
/// (`["bash", "-lc", "git status"]` is the script `git status`). Arguments that are not
/// JSON are taken as the script itself.
pub fn scripts(arguments: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<Value>(arguments) else {
        return vec![arguments.to_owned()];
    };
    let mut found = Vec::new();
    collect(&value, false, &mut found);
    found
}

fn collect(value: &Value, under_command: bool, found: &mut Vec<String>) {
    match value {
        Value::String(s) if under_command => found.push(s.clone()),
        Value::Array(items) if under_command && items.iter().all(Value::is_string) => {
            let argv: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            found.push(argv_script(&argv));
        }
        Value::Array(items) => {
            for item in items {
                collect(item, under_command, found);
            }
        }
        Value::Object(fields) => {
            for (key, field) in fields {
                collect(field, COMMAND_KEYS.contains(&key.as_str()), found);
            }
        }
        _ => {}
    }
}

/// An argv as the script it runs: `sh -c SCRIPT` (and bash, zsh, `-lc`) is SCRIPT; anything
/// else is its words joined, quoted where they need it.
fn argv_script(argv: &[&str]) -> String {
    if let [shell, flag, script, ..] = argv
        && is_shell_program(shell)
        && flag.starts_with('-')
        && flag.contains('c')
    {
        return (*script).to_owned();
    }
    shlex::try_join(argv.iter().copied()).unwrap_or_else(|_| argv.join(" "))
}

fn is_shell_program(word: &str) -> bool {
    let program = word.rsplit('/').next().unwrap_or(word);
    matches!(program, "sh" | "bash" | "zsh" | "dash" | "ksh" | "fish")
}

/// The simple commands of a script, each as its words: split at `&&`, `||`, `;`, `|`, `&`
/// and newlines outside quotes; `sudo`, `env VAR=value`, `nohup`, `time`, `command` and
/// `exec` prefixes dropped; `sh -c '...'` read as the script inside.
pub fn commands(script: &str) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for piece in split_script(script) {
        let words = shlex::split(&piece)
            .unwrap_or_else(|| piece.split_whitespace().map(str::to_owned).collect());
        let words = strip_prefixes(words);
        if let [shell, flag, inner, ..] = words.as_slice()
            && is_shell_program(shell)
            && flag.starts_with('-')
            && flag.contains('c')
        {
            all.extend(commands(inner));
            continue;
        }
        if !words.is_empty() {
            all.push(words);
        }
    }
    all
}

/// The script cut at its command separators, quotes respected.
fn split_script(script: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => {
                escaped = true;
                current.push(c);
            }
            '\'' if !double => {
                single = !single;
                current.push(c);
            }
            '"' if !single => {
                double = !double;
                current.push(c);
            }
            ';' | '\n' | '|' | '&' if !single && !double => {
                if matches!(chars.peek(), Some('&' | '|')) {
                    chars.next();
                }
                pieces.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    pieces.push(current);
    pieces
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn strip_prefixes(mut words: Vec<String>) -> Vec<String> {
    loop {
        let Some(first) = words.first() else {
            return words;
        };
        let drop = match first.as_str() {
            "sudo" | "nohup" | "time" | "command" | "exec" | "builtin" => {
                // `sudo -u root git ...`: its own options go too.
                1 + words[1..].iter().take_while(|w| w.starts_with('-')).count()
            }
            "env" => 1 + words[1..].iter().take_while(|w| w.contains('=')).count(),
            w if w.contains('=') && !w.starts_with('-') => 1,
            _ => return words,
        };
        words.drain(..drop.min(words.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_compare_without_case_or_separators() {
        for name in [
            "Bash",
            "shell",
            "execute_command",
            "run_terminal_cmd",
            "local-shell",
        ] {
            assert!(runs_shell(name), "{name}");
        }
        assert!(!runs_shell("read_file"));
        assert!(writes_files("Write") && writes_files("apply_patch") && writes_files("ApplyPatch"));
        assert!(!writes_files("Read"));
    }

    #[test]
    fn scripts_come_from_strings_argv_arrays_and_nested_inputs() {
        assert_eq!(scripts(r#"{"command": "git status"}"#), ["git status"]);
        assert_eq!(
            scripts(r#"{"command": ["bash", "-lc", "git reset --hard"]}"#),
            ["git reset --hard"]
        );
        assert_eq!(
            scripts(r#"{"input": {"cmd": ["git", "push", "--force"]}}"#),
            ["git push --force"]
        );
        assert_eq!(scripts("rm -rf /"), ["rm -rf /"]);
        assert!(scripts(r#"{"path": "src/main.rs"}"#).is_empty());
    }

    #[test]
    fn scripts_split_into_commands_outside_quotes_without_prefixes() {
        let words = |s: &str| commands(s);
        assert_eq!(
            words("cd repo && sudo git reset --hard; echo 'a; b' | cat"),
            vec![
                vec!["cd".to_owned(), "repo".into()],
                vec!["git".into(), "reset".into(), "--hard".into()],
                vec!["echo".into(), "a; b".into()],
                vec!["cat".into()],
            ]
        );
        assert_eq!(
            words("env GIT_DIR=x FOO=1 bash -c \"git clean -fd\""),
            vec![vec!["git".to_owned(), "clean".into(), "-fd".into()]]
        );
        assert_eq!(words("  "), Vec::<Vec<String>>::new());
    }
}
