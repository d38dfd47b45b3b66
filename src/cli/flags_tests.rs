//! Every flag of every subcommand parses with a valid value, through clap and the
//! derive's `FromArgMatches` (where a flag declared with one type and parsed into
//! another panics): the command tree is walked, so new flags are covered as they come.
use super::Cli;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, Command, CommandFactory, Parser};

/// Strings tried in order for a flag without a fixed set of values.
const CANDIDATES: [&str; 4] = ["1", "3x32x32", "name=1,2", "x"];

/// A value `arg`'s own parser accepts: its first possible value, else a candidate.
fn value_for(arg: &Arg) -> String {
    if let Some(v) = arg.get_possible_values().first() {
        return v.get_name().to_string();
    }
    let probe = |c: &&str| {
        let a = Arg::new("v").long("v").value_parser(arg.get_value_parser().clone());
        Command::new("probe").arg(a).try_get_matches_from(["probe", "--v", *c]).is_ok()
    };
    CANDIDATES
        .into_iter()
        .find(probe)
        .unwrap_or_else(|| panic!("no candidate value parses for --{}", arg.get_id()))
        .to_string()
}

/// `--name value` (or `--name` for a switch).
fn flag(arg: &Arg) -> Vec<String> {
    let name = format!("--{}", arg.get_long().expect("options have a long name"));
    if arg.get_action().takes_values() {
        vec![name, value_for(arg)]
    } else {
        vec![name]
    }
}

/// Leaf subcommands with their path of names.
fn leaves<'c>(cmd: &'c Command, path: Vec<String>, out: &mut Vec<(Vec<String>, &'c Command)>) {
    if cmd.get_subcommands().next().is_none() {
        out.push((path, cmd));
        return;
    }
    for s in cmd.get_subcommands() {
        let mut p = path.clone();
        p.push(s.get_name().to_string());
        leaves(s, p, out);
    }
}

/// The long names a "missing required argument" error lists.
fn missing(e: &clap::Error) -> Vec<String> {
    match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::Strings(v)) => v
            .iter()
            .filter_map(|s| s.split_whitespace().next()?.strip_prefix("--").map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// Parses `line` (program name included) into [`Cli`], adding the options a missing-
/// argument error names (conditionally required ones) until it parses or fails otherwise.
fn parse(cmd: &Command, mut line: Vec<String>) -> Result<Cli, String> {
    for _ in 0..8 {
        match Cli::try_parse_from(&line) {
            Ok(c) => return Ok(c),
            Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => {
                let names = missing(&e);
                if names.is_empty() {
                    return Err(e.to_string());
                }
                for n in names {
                    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(n.as_str()));
                    line.extend(flag(arg.ok_or_else(|| e.to_string())?));
                }
            }
            Err(e) => return Err(format!("{}: {e}", line.join(" "))),
        }
    }
    Err(format!("{}: still missing arguments", line.join(" ")))
}

#[test]
fn every_flag_of_every_subcommand_parses() {
    let root = Cli::command();
    root.clone().debug_assert();
    let mut cmds = Vec::new();
    leaves(&root, vec!["rlal".into()], &mut cmds);
    let (mut failures, mut tested) = (Vec::new(), 0);
    for (path, cmd) in &cmds {
        let mut base = path.clone();
        for p in cmd.get_positionals() {
            base.push(value_for(p));
        }
        let skip = |a: &&Arg| {
            a.is_positional()
                || a.is_hide_set()
                || matches!(a.get_action(), clap::ArgAction::Help | clap::ArgAction::Version)
        };
        for arg in cmd.get_arguments().filter(|a| !skip(a)) {
            let mut line = base.clone();
            line.extend(flag(arg));
            tested += 1;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(cmd, line)));
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push(format!("{} --{}: panicked", path.join(" "), arg.get_id())),
            }
        }
    }
    assert!(tested > 100, "only {tested} flags found");
    assert!(failures.is_empty(), "{} flags fail:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn shared_input_flags_reach_every_command_that_imports_a_model() {
    use super::bench::BenchCommand as B;
    use super::Command as C;
    let shared = ["--input-shape", "28x28x1", "--input-layout", "nhwc", "--bind", "a:0=1,2"];
    for line in [
        "import m.onnx",
        "eval m.onnx --data d",
        "export o.onnx --model m.onnx --uniform 0.5",
        "train m.onnx",
        "prune m.onnx",
        "bench train --model m.onnx",
        "bench search",
    ] {
        let args = std::iter::once("rlal").chain(line.split(' ')).chain(shared);
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{line}: {e}"));
        let input = match cli.command {
            C::Import(a) => a.input,
            C::Eval(a) => a.input,
            C::Export(a) => a.input,
            C::Train(a) => a.input,
            C::Prune(a) => a.input,
            C::Bench(b) => match b.what {
                B::Train(a) => a.input,
                B::Search(a) => a.input,
                _ => unreachable!("{line}"),
            },
        };
        assert_eq!(input.input_shape, Some(vec![28, 28, 1]), "{line}");
        assert_eq!(input.input_layout, Some(rlal::ir::InputLayout::Nhwc), "{line}");
        assert_eq!(input.bind, vec![("a:0".to_string(), vec![1.0, 2.0])], "{line}");
    }
}
