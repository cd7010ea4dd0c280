fn main() -> std::process::ExitCode {
    ersatz::cli::main()
}
