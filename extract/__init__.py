"""affectsync extractors: videos -> frame-synchronized features in a Zarr store (``python -m extract``).

Importing the package registers the built-in extractors, in the order ``--list-features`` shows them
(:mod:`extract.registry` lies below them: they import it, it imports none of them).
"""

import extract.audio  # noqa: F401  (logmel, mfcc_mel, mel64, mel64_fine)
import extract.faces.extractor  # noqa: F401  (identity, face_crop)
import extract.faces.expression  # noqa: F401  (fer)
import extract.faces.senet  # noqa: F401  (the face embeddings whose weights users bring)
import extract.faces.onnx_models  # noqa: F401  (iresnet, hsemotion and the onnx:<name> family)
import extract.faces.facenet  # noqa: F401
import extract.faces.geometry  # noqa: F401  (face_geometry)
import extract.speech.words  # noqa: F401  (words, bert, vggish)
import extract.speech.bert  # noqa: F401
import extract.speech.vggish  # noqa: F401
import extract.encoders.audio  # noqa: F401  (the hf_audio:<name> family)
import extract.encoders.vision  # noqa: F401  (the hf_vision:<name> family)
