//! The serving side: `<Trait>Server<T>`, which adds one route per method
//! (`Trait.method`) for any implementation `T` to a router, and describes
//! the service for `switchboard.describe`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::{Method, Service, type_text};

pub fn generate(service: &Service) -> TokenStream {
    let vis = &service.item.vis;
    let name = service.name();
    let server = format_ident!("{}Server", name);
    let doc = format!(
        "Serves an implementation of [`{name}`]: add it to a router with \
         [`Router::service`](::switchboard::Router::service), which routes \
         `{name}.<method>` to it. Several services can share one router."
    );
    let routes = service
        .methods
        .iter()
        .map(|method| route_tokens(service, method));
    let description = description(service);
    quote! {
        #[doc = #doc]
        #vis struct #server<T> {
            service: ::std::sync::Arc<T>,
        }

        impl<T: #name> #server<T> {
            /// Serves `service`.
            #vis fn new(service: T) -> Self {
                Self { service: ::std::sync::Arc::new(service) }
            }

            /// Serves a service that is also used elsewhere.
            #vis fn from_arc(service: ::std::sync::Arc<T>) -> Self {
                Self { service }
            }
        }

        impl<T> ::core::clone::Clone for #server<T> {
            fn clone(&self) -> Self {
                Self { service: ::std::sync::Arc::clone(&self.service) }
            }
        }

        impl<T> ::core::fmt::Debug for #server<T> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::core::stringify!(#server))
            }
        }

        impl<T: #name> ::switchboard::Service for #server<T> {
            fn register<S: ::core::marker::Send + ::core::marker::Sync + 'static>(
                self,
                router: ::switchboard::Router<S>,
            ) -> ::switchboard::Router<S> {
                #( let router = #routes; )*
                router
            }

            fn description(&self) -> ::switchboard::__private::serde_json::Value {
                #description
            }
        }
    }
}

/// `router.route("Trait.method", handler)` for one method.
fn route_tokens(service: &Service, method: &Method) -> TokenStream {
    let name = &method.name;
    let route = method.route(service.name());
    let arg_names: Vec<_> = method.args.iter().map(|arg| &arg.name).collect();
    let arg_types: Vec<_> = method.args.iter().map(|arg| &arg.ty).collect();
    let arg_serde: Vec<_> = method.args.iter().map(|arg| &arg.serde).collect();
    // With no arguments any parameters will do (`null` from a CLI, `{}`
    // from the typed client).
    let (params_item, params_pattern, params_type, values) = if method.args.is_empty() {
        (
            quote!(),
            quote!(_),
            quote!(::switchboard::__private::serde::de::IgnoredAny),
            quote!(),
        )
    } else {
        (
            quote! {
                #[derive(::switchboard::__private::serde::Deserialize)]
                #[serde(crate = "::switchboard::__private::serde")]
                struct __SwitchboardParams {
                    #( #(#arg_serde)* #arg_names: #arg_types, )*
                }
            },
            quote!(params),
            quote!(__SwitchboardParams),
            quote!(#( params.#arg_names ),*),
        )
    };
    let context = method.context.then(|| quote!(ctx,));
    quote! {{
        #params_item
        let service = ::std::sync::Arc::clone(&self.service);
        router.route(
            #route,
            move |ctx: ::switchboard::Context, #params_pattern: #params_type| {
                let service = ::std::sync::Arc::clone(&service);
                async move {
                    let _ = &ctx;
                    service.#name(#context #values).await
                }
            },
        )
    }}
}

/// The value `switchboard.describe` lists for this service.
fn description(service: &Service) -> TokenStream {
    let service_name = service.name().to_string();
    let methods = service.methods.iter().map(|method| {
        let name = syn::ext::IdentExt::unraw(&method.name).to_string();
        let route = method.route(service.name());
        let kind = method.kind.name();
        let returns = type_text(&method.returns);
        let params = method.args.iter().map(|arg| {
            let name = syn::ext::IdentExt::unraw(&arg.name).to_string();
            let ty = type_text(&arg.ty);
            quote!({ "name": #name, "type": #ty })
        });
        quote!({
            "name": #name,
            "route": #route,
            "kind": #kind,
            "params": [ #(#params),* ],
            "returns": #returns,
        })
    });
    quote! {
        ::switchboard::__private::serde_json::json!({
            "name": #service_name,
            "methods": [ #(#methods),* ],
        })
    }
}
