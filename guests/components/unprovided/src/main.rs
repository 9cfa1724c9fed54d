//! A command component that imports an interface nex does not provide: refused at deploy.

wit_bindgen::generate!({
    inline: "
        package acme:missing@0.1.0;
        interface store { get: func(key: string) -> string; }
        world unprovided { import store; }
    ",
});

fn main() {
    print!("{}", acme::missing::store::get("key"));
}
