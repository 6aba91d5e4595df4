#[derive(herald_macros::OpenEnum)]
struct Status {
    value: String,
}

fn main() {}
