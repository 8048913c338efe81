# bash completion for parallelcode (installed as share/bash-completion/completions/parallelcode).
# Plain compgen, so it works without the bash-completion package's helpers.
_parallelcode() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local queue_opts="--queue --queue-name --queue-password-file"
  local job_opts="--timeout --retries -r --raw"
  local cmd="" sub="" i word
  # The subcommand (and queue's own) are the first words that are neither options nor their values.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    case $word in
      --socket | --config | --queue | --queue-name | --queue-password-file | --deadline | --idempotency-key | \
        --timeout | --retries | --window | --joblog | --halt | --count) ((i++)) ;;
      -*) ;;
      *) if [ -z "$cmd" ]; then cmd=$word; elif [ "$cmd" = queue ] && [ -z "$sub" ]; then sub=$word; fi ;;
    esac
  done
  case $prev in
    --socket | --config | --queue-password-file | --joblog)
      COMPREPLY=($(compgen -f -- "$cur"))
      return ;;
    --queue | --queue-name | --deadline | --idempotency-key | --timeout | --retries | --window | --halt | --count)
      COMPREPLY=()
      return ;;
  esac
  local opts="" words=""
  case $cmd in
    "") opts="--socket --config -h --help --version"
      words="submit map status kill scale stop tasks queue" ;;
    submit) opts="$queue_opts $job_opts --deadline --idempotency-key -h --help" ;;
    map) opts="$queue_opts $job_opts --progress --window --null --unordered --joblog --halt -h --help"
      words=$(compgen -f -- "$cur") ;;  # map TASK [FILE]: the input file
    status) opts="--json --prometheus -h --help" ;;
    stop) opts="--now -h --help" ;;
    tasks) opts="--json -h --help" ;;
    kill | scale) opts="-h --help" ;;
    queue)
      case $sub in
        "") opts="-h --help"; words="stats dead retry purge" ;;
        stats | purge) opts="$queue_opts --json -h --help" ;;
        dead) opts="$queue_opts --json --count -h --help" ;;
        retry) opts="$queue_opts --wait -r --raw -h --help" ;;
      esac ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
  fi
}
complete -F _parallelcode parallelcode
