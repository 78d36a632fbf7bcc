fn main() {
    std::process::exit(remus_ckpt::cli::main());
}
