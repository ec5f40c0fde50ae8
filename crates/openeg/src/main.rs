fn main() {
    println!("openeg");
}
