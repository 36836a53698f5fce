"""The demo, beside the product: a synthetic territory generator and a local wire server.

    iarbre_demo.generator     generate_demo(out, ...): every source in its real wire format and schema
    iarbre_demo.server        LocalDataServer(root, port=...): WFS / data-fair / Cartofriches on 127.0.0.1
                              (entry point group `iarbre.local_servers`, name "demo")
    iarbre_demo.wire          writers of those wire formats
    iarbre_demo.cli           the `iarbre-demo` command

This package imports iarbre_assets (absolute imports); iarbre_assets never imports it.
"""
