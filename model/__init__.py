"""The Hallo-class model: ReferenceNet, denoising 3D UNet with motion and hierarchical audio modules,
face locator, image/audio projections, weight loading and clip-by-clip video generation.

Submodules are imported explicitly (`from model.net import HalloNet`); this package import stays light.
"""
