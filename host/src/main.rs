//! The `agenthook` binary; see [`agenthook::cli`].

fn main() -> std::process::ExitCode {
    agenthook::cli::main()
}
