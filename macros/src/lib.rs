//! The `#[switchboard::service]` attribute. Use it through the switchboard
//! crate, whose documentation of `switchboard::service` has the examples:
//! the code this macro writes names only `::switchboard::...` paths.
//!
//! The work is in steps, a module each: `model` reads the trait (and
//! refuses what cannot be a service, pointing at the offending tokens),
//! `client` writes the typed client, `blocking` the blocking one,
//! `server` the routes and the description.

use proc_macro::TokenStream;
use syn::parse_macro_input;

mod blocking;
mod client;
mod model;
mod server;

/// Turns a trait of async methods into a switchboard service: the trait
/// itself (its methods' futures made `Send`), a typed client
/// `<Trait>Client`, a blocking one `<Trait>BlockingClient`, and a server
/// `<Trait>Server<T>` that adds routes `<Trait>.<method>` to a
/// `switchboard::Router`.
///
/// See `switchboard::service` for the full documentation.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new_spanned(attr, "#[switchboard::service] takes no arguments")
            .to_compile_error()
            .into();
    }
    let item = parse_macro_input!(item as syn::ItemTrait);
    match model::Service::read(item) {
        Ok(service) => {
            // The checks first: their errors are the clearest, and the
            // compiler reports in order.
            let mut out = checks(&service);
            out.extend(service.trait_tokens());
            out.extend(client::generate(&service));
            out.extend(blocking::generate(&service));
            out.extend(server::generate(&service));
            out.into()
        }
        Err(failure) => model::failed(failure).into(),
    }
}

/// Static checks on the types that travel, one per type, each spanned at
/// the type as written, so a type that is not serde gets one clear error
/// where it was declared (the trait behind the check says what is missing).
fn checks(service: &model::Service) -> proc_macro2::TokenStream {
    use quote::{quote, quote_spanned};
    use syn::spanned::Spanned;
    let mut checks = proc_macro2::TokenStream::new();
    for method in &service.methods {
        for arg in &method.args {
            let ty = &arg.ty;
            checks.extend(quote_spanned! {ty.span()=>
                ::switchboard::__private::assert_argument::<#ty>();
            });
        }
        let (answer, error) = match &method.output {
            model::Output::Value(ty) | model::Output::Stream(ty) => (ty, None),
            model::Output::Fallible { ok, err } => (&**ok, Some(&**err)),
        };
        checks.extend(quote_spanned! {answer.span()=>
            ::switchboard::__private::assert_answer::<#answer>();
        });
        if let Some(error) = error {
            checks.extend(quote_spanned! {error.span()=>
                ::switchboard::__private::assert_error::<#error>();
            });
        }
    }
    quote! {
        const _: () = {
            #[allow(dead_code)]
            fn checks() {
                #checks
            }
        };
    }
}
