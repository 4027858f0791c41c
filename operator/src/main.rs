fn main() -> std::process::ExitCode {
    schemaop::cli::main()
}
