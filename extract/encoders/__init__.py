"""Today's self-supervised encoders on the frame timeline: ``hf_audio:<name>`` (:mod:`extract.encoders.audio`) and
``hf_vision:<name>`` (:mod:`extract.encoders.vision`), sharing :mod:`extract.encoders.hf_models`; where audio rows
land on frames is :mod:`extract.encoders.timeline`."""
