;;; tokenlens.el --- Eglot setup and relevance overlays for tokenlens  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "29.1") (eglot "1.15"))

;;; Commentary:

;; Starts `tokenlens lsp' for text, Markdown and commit-message buffers through Eglot, asks
;; for the `tokenlens/publishScores' notification and paints each scored word with an
;; overlay in one of the faces `tokenlens-pos-1'..`tokenlens-pos-5' (evidence for the
;; explained class) and `tokenlens-neg-1'..`tokenlens-neg-5' (against it).
;;
;;   (require 'tokenlens)
;;   (tokenlens-setup)
;;   M-x eglot
;;
;; Without this file, plain Eglot still gives diagnostics (Flymake), hovers (Eldoc) and
;; inlay hints (`eglot-inlay-hints-mode') from the server.

;;; Code:

(require 'eglot)
(require 'cl-lib)

(defgroup tokenlens nil "Word relevance of a text classifier." :group 'tools)

(defcustom tokenlens-program '("tokenlens" "lsp")
  "Command line of the tokenlens language server."
  :type '(repeat string))

(defcustom tokenlens-initialization-options '(:topK 25 :diagnosticSeverity "hint")
  "Settings sent as initializationOptions (keys: docs/lsp.md)."
  :type 'plist)

;; Colours: tokenlens's shared palette (src/render/palette.rs).
(defface tokenlens-pos-1 '((t :background "#fee8c8" :foreground "#000000")) "Relevance +1.")
(defface tokenlens-pos-2 '((t :background "#fdd0a2" :foreground "#000000")) "Relevance +2.")
(defface tokenlens-pos-3 '((t :background "#fdae6b" :foreground "#000000")) "Relevance +3.")
(defface tokenlens-pos-4 '((t :background "#f16913" :foreground "#000000")) "Relevance +4.")
(defface tokenlens-pos-5 '((t :background "#a63603" :foreground "#ffffff")) "Relevance +5.")
(defface tokenlens-neg-1 '((t :background "#deebf7" :foreground "#000000")) "Relevance -1.")
(defface tokenlens-neg-2 '((t :background "#c6dbef" :foreground "#000000")) "Relevance -2.")
(defface tokenlens-neg-3 '((t :background "#9ecae1" :foreground "#000000")) "Relevance -3.")
(defface tokenlens-neg-4 '((t :background "#4292c6" :foreground "#000000")) "Relevance -4.")
(defface tokenlens-neg-5 '((t :background "#08519c" :foreground "#ffffff")) "Relevance -5.")

(defclass tokenlens-server (eglot-lsp-server) ()
  "The tokenlens language server.")

(cl-defmethod eglot-client-capabilities :around ((_server tokenlens-server))
  "Declare the experimental capability that turns the scores notification on."
  (let ((capabilities (cl-call-next-method)))
    (plist-put capabilities :experimental '(:tokenlensScores t))))

(defun tokenlens--face (bucket)
  "The face of BUCKET (-5..5, never 0)."
  (intern (format "tokenlens-%s-%d" (if (< bucket 0) "neg" "pos") (min 5 (abs bucket)))))

(defun tokenlens--region (range)
  "Buffer positions of an LSP RANGE, in the negotiated encoding."
  (if (fboundp 'eglot-range-region)
      (eglot-range-region range)
    (eglot--range-region range)))

(defun tokenlens--clear ()
  (remove-overlays (point-min) (point-max) 'tokenlens t))

(cl-defmethod eglot-handle-notification
  ((_server tokenlens-server) (_method (eql tokenlens/publishScores)) &key uri version units
   &allow-other-keys)
  "Paint the scores of URI at VERSION (UNITS of words with range and bucket)."
  (when-let* ((buffer (find-buffer-visiting (eglot-uri-to-path uri))))
    (with-current-buffer buffer
      ;; Results for an older text would land on the wrong words.
      (when (or (null version) (null eglot--versioned-identifier)
                (>= version eglot--versioned-identifier))
        (save-restriction
          (widen)
          (tokenlens--clear)
          (seq-doseq (unit units)
            (seq-doseq (word (plist-get unit :words))
              (let* ((region (tokenlens--region (plist-get word :range)))
                     (overlay (make-overlay (car region) (cdr region))))
                (overlay-put overlay 'tokenlens t)
                (overlay-put overlay 'face (tokenlens--face (plist-get word :bucket)))
                (overlay-put overlay 'evaporate t)))))))))

(defun tokenlens-set-target (label)
  "Explain class LABEL (\"auto\": the predicted class)."
  (interactive "sClass to explain (label, index or auto): ")
  (eglot-execute (eglot-current-server)
                 (list :command "tokenlens.setTarget" :arguments (vector label))))

;;;###autoload
(defun tokenlens-setup ()
  "Register tokenlens with Eglot for text, Markdown and commit messages."
  (add-to-list 'eglot-server-programs
               `((text-mode markdown-mode gfm-mode git-commit-mode log-edit-mode)
                 . (tokenlens-server ,@tokenlens-program
                                     :initializationOptions ,tokenlens-initialization-options))))

(provide 'tokenlens)
;;; tokenlens.el ends here
