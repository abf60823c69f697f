//! How a command is handed to the shell, and the start-up check that it
//! can run at all.
//!
//! A *simple* command (plain words, optionally quoted, naming a program)
//! is run as `exec WORDS`, so the program itself replaces the shell and is
//! beaver's direct child: the parent-death signal set before the shell
//! starts then reaches it when beaver is `kill -9`ed. Anything else (pipes,
//! `;`, `&&`, redirections, variables, globs, assignments, builtins) runs
//! as written under `/bin/sh -c`, with the shell as the direct child.

use std::path::Path;

/// Words that start shell syntax rather than name a program.
const RESERVED: &[&str] = &[
    "!", "{", "}", "[[", "]]", "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for",
    "function", "if", "in", "select", "then", "time", "until", "while",
];

/// Builtins of dash and bash: the shell runs them itself, so `exec` would
/// look for a program of that name instead.
const BUILTINS: &[&str] = &[
    ".",
    ":",
    "[",
    "alias",
    "bg",
    "break",
    "builtin",
    "caller",
    "cd",
    "chdir",
    "command",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "declare",
    "dirs",
    "disown",
    "echo",
    "enable",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "getopts",
    "hash",
    "help",
    "history",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
];

/// Characters that end a word and start an operator.
const OPERATORS: &str = ";&|<>()";

/// What lexing a command found: its leading plain words (quotes removed)
/// and whether the whole command is nothing but such words.
#[derive(Debug, PartialEq, Eq)]
struct Lexed {
    words: Vec<String>,
    all_plain: bool,
}

fn plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./:,+@%^=".contains(c) || !c.is_ascii()
}

/// Lexes plain words until the first piece of shell syntax.
fn lex(command: &str) -> Lexed {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(q) => w.push(q),
                        None => return Lexed::stopped(words),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('$' | '`' | '\\') | None => return Lexed::stopped(words),
                        Some(q) => w.push(q),
                    }
                }
            }
            c if plain_char(c) => word.get_or_insert_with(String::new).push(c),
            c if OPERATORS.contains(c) || c == '\n' => {
                words.extend(word.take());
                return Lexed::stopped(words);
            }
            // `$`, a backtick, a backslash, a glob, `~`, `#`...: the word
            // means what the shell makes of it, which is not known here.
            _ => return Lexed::stopped(words),
        }
    }
    words.extend(word);
    Lexed {
        words,
        all_plain: true,
    }
}

impl Lexed {
    fn stopped(words: Vec<String>) -> Lexed {
        Lexed {
            words,
            all_plain: false,
        }
    }
}

/// Whether `word` in first position is shell syntax or a builtin, not a
/// program, or an assignment.
fn not_a_program(word: &str) -> bool {
    word.is_empty() || word.contains('=') || RESERVED.contains(&word) || BUILTINS.contains(&word)
}

/// The program a command starts with, when that is plain to see: its
/// first word, unless the command starts with syntax, a builtin or an
/// assignment.
pub(super) fn leading_program(command: &str) -> Option<String> {
    let first = lex(command).words.into_iter().next()?;
    (!not_a_program(&first)).then_some(first)
}

/// What `/bin/sh -c` runs for `command`: `exec ` and the command when it is
/// a simple command naming a program (the program then replaces the shell),
/// else the command as written.
pub(super) fn shell_text(command: &str) -> String {
    let lexed = lex(command);
    match lexed.words.first() {
        Some(first) if lexed.all_plain && !not_a_program(first) => format!("exec {command}"),
        _ => command.to_owned(),
    }
}

/// The start-up check of an `exec` command: valid shell syntax, and, when
/// it starts with a program, that program exists and can be executed
/// (relative paths from the working directory, bare names on `PATH`, or
/// known to the shell as a builtin). `Err` says what is wrong and what to do.
pub fn check_runnable(command: &str) -> Result<(), String> {
    super::super::check_command(command)?;
    let syntax = std::process::Command::new(super::SHELL)
        .args(["-n", "-c", command])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {} to check the command: {e}", super::SHELL))?;
    if !syntax.status.success() {
        let why = String::from_utf8_lossy(&syntax.stderr);
        let why: String = why.trim().chars().take(512).collect();
        return Err(format!("the command `{command}` is not valid shell: {why}"));
    }
    let Some(program) = leading_program(command) else {
        return Ok(());
    };
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "the working directory".into());
    if program.contains('/') {
        return check_path(Path::new(&program), &program, &cwd);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).any(|dir| {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".").to_path_buf()
        } else {
            dir
        };
        is_executable_file(&dir.join(&program))
    });
    if on_path || shell_knows(&program) {
        return Ok(());
    }
    Err(format!(
        "the command `{command}` cannot run: `{program}` is neither a program on PATH ({path}) nor a shell builtin; give its full path, or install it"
    ))
}

/// The checks of a program named by path.
fn check_path(path: &Path, shown: &str, cwd: &str) -> Result<(), String> {
    let relative = if path.is_relative() {
        format!(
            " (a relative path is taken from beaver's working directory, {cwd}, where every job runs)"
        )
    } else {
        String::new()
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "the job command's program {shown} does not exist{relative}; give a path that exists"
        )),
        Err(e) => Err(format!("the job command's program {shown}: {e}{relative}")),
        Ok(m) if m.is_dir() => Err(format!(
            "the job command's program {shown} is a directory{relative}; give the program inside it"
        )),
        Ok(_) if !is_executable_file(path) => Err(format!(
            "the job command's program {shown} is not executable{relative}; make it so with `chmod +x {shown}`"
        )),
        Ok(_) => Ok(()),
    }
}

/// A regular file this process may execute.
fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // access only reads it.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// Whether the shell knows `name` (a builtin of this particular shell).
fn shell_knows(name: &str) -> bool {
    std::process::Command::new(super::SHELL)
        .args(["-c", "command -v -- \"$1\" >/dev/null", "sh", name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn simple_commands_are_execed() {
        for (command, run) in [
            ("./handle-job.sh", "exec ./handle-job.sh"),
            ("sleep 30", "exec sleep 30"),
            (
                "python3 'my handler.py' --mode=\"fast one\"",
                "exec python3 'my handler.py' --mode=\"fast one\"",
            ),
            ("  /usr/bin/env  ", "exec   /usr/bin/env  "),
        ] {
            assert_eq!(shell_text(command), run, "{command}");
        }
    }

    #[test]
    fn anything_else_runs_as_written() {
        for command in [
            "cat > /dev/null",
            "jq .x | ./store",
            "./a; ./b",
            "./a && ./b",
            "echo $HOME",
            "echo \"$HOME\"",
            "ls *.json",
            "~/bin/handler",
            "FOO=1 ./handler",
            "exit 3",
            "echo hi",
            "true",
            "if true; then :; fi",
            "{ ./a; }",
            "./a\n./b",
            "'unclosed",
            "a\\ b",
            "",
        ] {
            assert_eq!(shell_text(command), command, "{command:?}");
        }
    }

    #[test]
    fn the_leading_program_is_found_when_it_is_plain() {
        assert_eq!(leading_program("./x | jq ."), Some("./x".into()));
        assert_eq!(leading_program("./x>out"), Some("./x".into()));
        assert_eq!(leading_program("'./my x' a"), Some("./my x".into()));
        assert_eq!(leading_program("$HOME/x"), None);
        assert_eq!(leading_program("FOO=1 ./x"), None);
        assert_eq!(leading_program("exit 3"), None);
        assert_eq!(leading_program("if x; then y; fi"), None);
        assert_eq!(leading_program("   "), None);
    }

    #[test]
    fn the_start_up_check_names_what_is_wrong() {
        assert_eq!(check_runnable("true"), Ok(()));
        assert_eq!(check_runnable("sleep 1 | cat"), Ok(()));
        assert_eq!(check_runnable("exit 3"), Ok(()));
        let e = check_runnable("/nonexistent/beaver-handler --x").unwrap_err();
        assert!(
            e.contains("/nonexistent/beaver-handler does not exist"),
            "{e}"
        );
        let e = check_runnable("./nonexistent-beaver-handler").unwrap_err();
        assert!(e.contains("beaver's working directory"), "{e}");
        let e = check_runnable("beaver-no-such-program-anywhere x").unwrap_err();
        assert!(e.contains("neither a program on PATH"), "{e}");
        let e = check_runnable("echo (").unwrap_err();
        assert!(e.contains("not valid shell"), "{e}");
        let e = check_runnable("/tmp").unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let dir = std::env::temp_dir().join(format!("beaver-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let script = dir.join("not-executable.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap_or_default();
        let e = check_runnable(&script.display().to_string()).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains("chmod +x"), "{e}");
    }
}
