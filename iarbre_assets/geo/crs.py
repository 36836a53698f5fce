"""The platform CRS, named once: every stored raster, layer and cell id is in Lambert-93."""

PLATFORM_CRS = "EPSG:2154"
