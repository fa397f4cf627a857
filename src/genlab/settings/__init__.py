"""The sections of a run's settings (pydantic only; :class:`genlab.config.TrainConfig` assembles them)."""

from genlab.settings.optimizers import (OPTIMIZER_SETTINGS, AdamSettings, IVONSettings, OptimizerSettings,
                                        SGDSettings, SGLDSettings, VGDSettings, optimizer_settings_class)
from genlab.settings.sections import (AugmentSettings, DataSettings, DistillSettings, InitSettings, LoggingSettings,
                                      ModelSettings, NoiseSettings, PluginSettings, QuantizationSettings, RunSettings,
                                      Section, SubspaceSettings, TrackingSettings, flat_name)

__all__ = ["OPTIMIZER_SETTINGS", "AdamSettings", "IVONSettings", "OptimizerSettings", "SGDSettings", "SGLDSettings",
           "VGDSettings", "optimizer_settings_class", "AugmentSettings", "DataSettings", "DistillSettings",
           "InitSettings", "LoggingSettings", "ModelSettings", "NoiseSettings", "PluginSettings",
           "QuantizationSettings", "RunSettings", "Section", "SubspaceSettings", "TrackingSettings", "flat_name"]
