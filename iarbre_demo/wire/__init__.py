"""Writers of the partners' wire formats, for the demo's local server and the tests (the product only reads).

    gml_writer.write_feature_collection           WFS 2.0 / GML 3.2 FeatureCollection
    datafair_writer.write_dataset_file            data-fair record file (paged as `.../lines`)
    cartofriches_writer.write_dataset_file        Cartofriches GeoJSON collection
"""
